// The part of sentencepiece's model file (a ModelProto message, sentencepiece_model.proto)
// that kvlm writes and reads, in the protobuf wire format, without protobuf: Debian's
// libsentencepiece-dev ships no generated headers, so a GGUF vocabulary is turned into a
// model by writing the bytes here and handing them to LoadFromSerializedProto.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace kvlm {

// TrainerSpec.ModelType.
enum class SpmModelType : int32_t { Unigram = 1, Bpe = 2, Word = 3, Char = 4 };
const char* spm_model_type_name(SpmModelType type);

struct SpmPiece {
  std::string text;  // "▁the", "<0x0A>", "<s>"
  float score = 0;
  TokenType type = TokenType::Normal;  // sentencepiece's piece types use the same numbers
};

struct SpmModel {
  std::vector<SpmPiece> pieces;
  // TrainerSpec
  SpmModelType model_type = SpmModelType::Unigram;
  bool byte_fallback = false;  // pieces <0x00>..<0xFF> spell what no other piece covers
  int32_t unk_id = 0, bos_id = 1, eos_id = 2, pad_id = -1;
  // NormalizerSpec; the defaults are the proto's.
  std::string normalizer_name;
  bool add_dummy_prefix = true;  // encode(text) starts as if text began with a space
  bool remove_extra_whitespaces = true;
  bool escape_whitespaces = true;
};

std::string serialize_spm_model(const SpmModel& model);

// Reads the fields above and skips all others. Throws std::runtime_error on bytes that are
// not a well-formed message (the caller adds the file name).
SpmModel parse_spm_model(std::string_view bytes);

}  // namespace kvlm
