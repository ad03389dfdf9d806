#include "tokenizer/spm_proto.h"

#include <cstring>
#include <stdexcept>

namespace kvlm {
namespace {

// Field numbers from sentencepiece_model.proto.
namespace field {
constexpr uint32_t kPieces = 1, kTrainerSpec = 2, kNormalizerSpec = 3;
constexpr uint32_t kPieceText = 1, kPieceScore = 2, kPieceType = 3;
constexpr uint32_t kModelType = 3, kByteFallback = 35, kUnkId = 40, kBosId = 41, kEosId = 42,
                   kPadId = 43;
constexpr uint32_t kNormalizerName = 1, kAddDummyPrefix = 3, kRemoveExtraWhitespaces = 4,
                   kEscapeWhitespaces = 5;
}  // namespace field

// Protobuf wire types.
enum WireType : uint32_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

// ---------------------------------------------------------------------------------------
// Writing. Every field is written, defaults included, so the bytes say everything.
// ---------------------------------------------------------------------------------------
class Writer {
 public:
  void varint(uint64_t value) {
    while (value >= 0x80) {
      bytes_ += static_cast<char>((value & 0x7F) | 0x80);
      value >>= 7;
    }
    bytes_ += static_cast<char>(value);
  }
  void tag(uint32_t field_number, WireType type) { varint(uint64_t{field_number} << 3 | type); }
  // int32, enums and bools are varints; a negative int32 takes ten bytes, as protobuf
  // sign-extends it to 64 bits.
  void int_field(uint32_t field_number, int64_t value) {
    tag(field_number, kVarint);
    varint(static_cast<uint64_t>(value));
  }
  void float_field(uint32_t field_number, float value) {
    tag(field_number, kFixed32);
    uint32_t bits;
    std::memcpy(&bits, &value, sizeof bits);
    for (int i = 0; i < 4; ++i) bytes_ += static_cast<char>(bits >> (8 * i) & 0xFF);
  }
  void bytes_field(uint32_t field_number, std::string_view value) {
    tag(field_number, kLengthDelimited);
    varint(value.size());
    bytes_.append(value);
  }
  std::string& bytes() { return bytes_; }

 private:
  std::string bytes_;
};

std::string piece_message(const SpmPiece& piece) {
  Writer w;
  w.bytes_field(field::kPieceText, piece.text);
  w.float_field(field::kPieceScore, piece.score);
  w.int_field(field::kPieceType, static_cast<int32_t>(piece.type));
  return std::move(w.bytes());
}

std::string trainer_spec_message(const SpmModel& model) {
  Writer w;
  w.int_field(field::kModelType, static_cast<int32_t>(model.model_type));
  w.int_field(field::kByteFallback, model.byte_fallback);
  w.int_field(field::kUnkId, model.unk_id);
  w.int_field(field::kBosId, model.bos_id);
  w.int_field(field::kEosId, model.eos_id);
  w.int_field(field::kPadId, model.pad_id);
  return std::move(w.bytes());
}

std::string normalizer_spec_message(const SpmModel& model) {
  Writer w;
  w.bytes_field(field::kNormalizerName, model.normalizer_name);
  w.int_field(field::kAddDummyPrefix, model.add_dummy_prefix);
  w.int_field(field::kRemoveExtraWhitespaces, model.remove_extra_whitespaces);
  w.int_field(field::kEscapeWhitespaces, model.escape_whitespaces);
  return std::move(w.bytes());
}

// ---------------------------------------------------------------------------------------
// Reading: one message at a time, every length checked against what is left.
// ---------------------------------------------------------------------------------------
class Reader {
 public:
  explicit Reader(std::string_view bytes) : bytes_(bytes) {}

  bool done() const { return pos_ == bytes_.size(); }

  uint64_t varint() {
    uint64_t value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ == bytes_.size()) fail("a number runs past the end");
      const auto byte = static_cast<unsigned char>(bytes_[pos_++]);
      value |= uint64_t{byte & 0x7Fu} << shift;
      if (!(byte & 0x80)) return value;
    }
    fail("a number is longer than ten bytes");
  }

  // The next field's number and wire type.
  std::pair<uint32_t, uint32_t> tag() {
    const uint64_t tag = varint();
    if (tag >> 3 == 0 || tag >> 3 > UINT32_MAX) fail("a field number is out of range");
    return {static_cast<uint32_t>(tag >> 3), static_cast<uint32_t>(tag & 7)};
  }

  std::string_view take(uint64_t n) {
    if (n > bytes_.size() - pos_) fail("a field runs past the end");
    const std::string_view out = bytes_.substr(pos_, n);
    pos_ += n;
    return out;
  }

  std::string_view length_delimited() { return take(varint()); }

  float fixed32_float() {
    const std::string_view raw = take(4);
    uint32_t bits = 0;
    for (int i = 0; i < 4; ++i) bits |= uint32_t{static_cast<unsigned char>(raw[i])} << (8 * i);
    float value;
    std::memcpy(&value, &bits, sizeof value);
    return value;
  }

  void skip(uint32_t wire_type) {
    switch (wire_type) {
      case kVarint: varint(); return;
      case kFixed64: take(8); return;
      case kLengthDelimited: length_delimited(); return;
      case kFixed32: take(4); return;
      default: fail("unsupported wire type " + std::to_string(wire_type));
    }
  }

  // Reads a field that must have the given wire type.
  void expect(uint32_t wire_type, uint32_t expected, uint32_t field_number) {
    if (wire_type != expected) {
      fail("field " + std::to_string(field_number) + " has wire type " + std::to_string(wire_type) +
           ", expected " + std::to_string(expected));
    }
  }

  [[noreturn]] static void fail(const std::string& what) {
    throw std::runtime_error("not a sentencepiece model: " + what);
  }

 private:
  std::string_view bytes_;
  size_t pos_ = 0;
};

int32_t int32_of(uint64_t varint) { return static_cast<int32_t>(static_cast<uint32_t>(varint)); }

SpmPiece parse_piece(std::string_view bytes) {
  SpmPiece piece;
  Reader r(bytes);
  while (!r.done()) {
    const auto [number, wire] = r.tag();
    if (number == field::kPieceText) {
      r.expect(wire, kLengthDelimited, number);
      piece.text = r.length_delimited();
    } else if (number == field::kPieceScore) {
      r.expect(wire, kFixed32, number);
      piece.score = r.fixed32_float();
    } else if (number == field::kPieceType) {
      r.expect(wire, kVarint, number);
      const int32_t type = int32_of(r.varint());
      if (type < static_cast<int32_t>(TokenType::Normal) ||
          type > static_cast<int32_t>(TokenType::Byte)) {
        Reader::fail("piece type " + std::to_string(type) + " is unknown");
      }
      piece.type = static_cast<TokenType>(type);
    } else {
      r.skip(wire);
    }
  }
  return piece;
}

void parse_trainer_spec(std::string_view bytes, SpmModel& model) {
  Reader r(bytes);
  while (!r.done()) {
    const auto [number, wire] = r.tag();
    const bool known = number == field::kModelType || number == field::kByteFallback ||
                       (number >= field::kUnkId && number <= field::kPadId);
    if (!known) {
      r.skip(wire);
      continue;
    }
    r.expect(wire, kVarint, number);
    const uint64_t value = r.varint();
    switch (number) {
      case field::kModelType: model.model_type = static_cast<SpmModelType>(int32_of(value)); break;
      case field::kByteFallback: model.byte_fallback = value != 0; break;
      case field::kUnkId: model.unk_id = int32_of(value); break;
      case field::kBosId: model.bos_id = int32_of(value); break;
      case field::kEosId: model.eos_id = int32_of(value); break;
      case field::kPadId: model.pad_id = int32_of(value); break;
    }
  }
}

void parse_normalizer_spec(std::string_view bytes, SpmModel& model) {
  Reader r(bytes);
  while (!r.done()) {
    const auto [number, wire] = r.tag();
    if (number == field::kNormalizerName) {
      r.expect(wire, kLengthDelimited, number);
      model.normalizer_name = r.length_delimited();
    } else if (number >= field::kAddDummyPrefix && number <= field::kEscapeWhitespaces) {
      r.expect(wire, kVarint, number);
      const bool value = r.varint() != 0;
      if (number == field::kAddDummyPrefix) model.add_dummy_prefix = value;
      if (number == field::kRemoveExtraWhitespaces) model.remove_extra_whitespaces = value;
      if (number == field::kEscapeWhitespaces) model.escape_whitespaces = value;
    } else {
      r.skip(wire);
    }
  }
}

}  // namespace

const char* spm_model_type_name(SpmModelType type) {
  switch (type) {
    case SpmModelType::Unigram: return "unigram";
    case SpmModelType::Bpe: return "BPE";
    case SpmModelType::Word: return "word";
    case SpmModelType::Char: return "char";
  }
  return "unknown";
}

std::string serialize_spm_model(const SpmModel& model) {
  Writer w;
  for (const SpmPiece& piece : model.pieces) w.bytes_field(field::kPieces, piece_message(piece));
  w.bytes_field(field::kTrainerSpec, trainer_spec_message(model));
  w.bytes_field(field::kNormalizerSpec, normalizer_spec_message(model));
  return std::move(w.bytes());
}

SpmModel parse_spm_model(std::string_view bytes) {
  SpmModel model;
  Reader r(bytes);
  while (!r.done()) {
    const auto [number, wire] = r.tag();
    if (number != field::kPieces && number != field::kTrainerSpec &&
        number != field::kNormalizerSpec) {
      r.skip(wire);
      continue;
    }
    r.expect(wire, kLengthDelimited, number);
    const std::string_view message = r.length_delimited();
    if (number == field::kPieces) model.pieces.push_back(parse_piece(message));
    if (number == field::kTrainerSpec) parse_trainer_spec(message, model);
    if (number == field::kNormalizerSpec) parse_normalizer_spec(message, model);
  }
  return model;
}

}  // namespace kvlm
