#include "tokenizer/spm.h"

#include <sentencepiece_processor.h>

#include <cctype>
#include <stdexcept>

namespace kvlm {
namespace {

constexpr std::string_view kSpaceSymbol = "\xE2\x96\x81";  // ▁ U+2581

std::string unescape_spaces(std::string_view piece) {
  std::string text;
  for (size_t pos = 0; pos < piece.size();) {
    if (piece.compare(pos, kSpaceSymbol.size(), kSpaceSymbol) == 0) {
      text += ' ';
      pos += kSpaceSymbol.size();
    } else {
      text += piece[pos++];
    }
  }
  return text;
}

// "<0x41>" -> 'A'.
char byte_of_piece(const std::string& piece) {
  const bool well_formed = piece.size() == 6 && piece.compare(0, 3, "<0x") == 0 &&
                           std::isxdigit(static_cast<unsigned char>(piece[3])) &&
                           std::isxdigit(static_cast<unsigned char>(piece[4])) && piece[5] == '>';
  if (!well_formed) {
    throw std::runtime_error("byte piece '" + piece + "' is not of the form <0xNN>");
  }
  return static_cast<char>(std::stoi(piece.substr(3, 2), nullptr, 16));
}

}  // namespace

SpmTokenizer::SpmTokenizer(const std::string& model_proto, const TokenizerSetup& setup)
    : processor_(std::make_unique<sentencepiece::SentencePieceProcessor>()) {
  // Most bad models come back as a status, but some throw from inside the library (its
  // trie builder refuses an empty piece with a Darts::Details::Exception).
  sentencepiece::util::Status status;
  try {
    status = processor_->LoadFromSerializedProto(model_proto);
  } catch (const std::exception& e) {
    throw std::runtime_error(std::string("sentencepiece cannot load the model: ") + e.what());
  }
  if (!status.ok()) {
    throw std::runtime_error("sentencepiece cannot load the model: " +
                             std::string(status.message()));
  }
  // The library has accepted the bytes, so they are a well-formed ModelProto.
  const SpmModel model = parse_spm_model(model_proto);
  model_type_ = model.model_type;
  byte_fallback_ = model.byte_fallback;
  add_dummy_prefix_ = model.add_dummy_prefix;
  std::vector<std::string> texts;
  for (const SpmPiece& piece : model.pieces) {
    const auto id = static_cast<int32_t>(texts.size());
    types_.push_back(piece.type);
    texts.push_back(piece.text);
    switch (piece.type) {
      case TokenType::Control:
      case TokenType::Unknown:
        token_bytes_.push_back(piece.text);
        specials_.add(id, piece.text);
        break;
      case TokenType::Byte: token_bytes_.emplace_back(1, byte_of_piece(piece.text)); break;
      default: token_bytes_.push_back(unescape_spaces(piece.text)); break;
    }
  }
  apply_setup(setup, texts);
}

SpmTokenizer::~SpmTokenizer() = default;

bool SpmTokenizer::is_special(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return false;
  return type_of(id) == TokenType::Control || type_of(id) == TokenType::UserDefined;
}

std::vector<int32_t> SpmTokenizer::encode(const std::string& text, bool add_bos,
                                          bool parse_special) const {
  std::vector<int32_t> ids;
  if (add_bos && bos_id_ >= 0) ids.push_back(bos_id_);
  std::vector<int> stretch_ids;
  auto encode_stretch = [&](std::string_view stretch) {
    if (const auto status = processor_->Encode(stretch, &stretch_ids); !status.ok()) {
      throw std::runtime_error("sentencepiece cannot encode the text: " +
                               std::string(status.message()));
    }
    ids.insert(ids.end(), stretch_ids.begin(), stretch_ids.end());
  };
  if (!parse_special) {
    encode_stretch(text);
    return ids;
  }
  specials_.split(
      text, [](int32_t) { return true; }, encode_stretch, [&](int32_t id) { ids.push_back(id); });
  return ids;
}

std::string SpmTokenizer::token_bytes(int32_t id) const {
  if (id < 0 || id >= vocab_size()) {
    throw std::out_of_range("token id " + std::to_string(id) + " is out of range (" +
                            std::to_string(vocab_size()) + " tokens)");
  }
  return token_bytes_[id];
}

std::string SpmTokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string text;
  bool at_start = add_dummy_prefix_;
  for (int32_t id : ids) {
    const std::string& bytes = token_bytes(id);
    if (at_start && type_of(id) != TokenType::Control) {
      at_start = false;
      if (type_of(id) != TokenType::Byte && !bytes.empty() && bytes[0] == ' ') {
        text.append(bytes, 1);
        continue;
      }
    }
    text += bytes;
  }
  return text;
}

std::string SpmTokenizer::describe() const {
  std::string s = std::string("sentencepiece ") + spm_model_type_name(model_type_) + ": " +
                  std::to_string(vocab_size()) + " pieces, " + std::to_string(specials_.size()) +
                  " special";
  s += byte_fallback_ ? ", byte fallback" : ", no byte fallback";
  s += add_dummy_prefix_ ? ", leading space added" : ", no leading space added";
  s += ", bos " + (bos_id_ >= 0 ? std::to_string(bos_id_) : std::string("none"));
  s += ", eos " + (eos_id_ >= 0 ? std::to_string(eos_id_) : std::string("none"));
  s += add_bos_ ? ", adds bos" : ", no bos added";
  return s + "; " + source_;
}

}  // namespace kvlm
