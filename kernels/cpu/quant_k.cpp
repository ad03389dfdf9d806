// The k-quants (Q2_K .. Q6_K): dequantisation and dot products against BlockQ8_256.
// PLACEHOLDER: filled in by the k-quant work; every entry throws until then.
#include <stdexcept>

#include "kernels/cpu/quant_impl.h"

namespace kvlm::quant::detail {
namespace {
void not_yet(const void*, float*, int64_t) { throw std::logic_error("k-quants: not implemented"); }
float not_yet_dot(const void*, const void*, int) {
  throw std::logic_error("k-quants: not implemented");
}
}  // namespace

const TypeKernels kQ2_K{not_yet, not_yet_dot, nullptr}, kQ3_K{not_yet, not_yet_dot, nullptr},
    kQ4_K{not_yet, not_yet_dot, nullptr}, kQ5_K{not_yet, not_yet_dot, nullptr},
    kQ6_K{not_yet, not_yet_dot, nullptr};

void quantize_q8_256(const float*, void*, int) { throw std::logic_error("k-quants: not implemented"); }

}  // namespace kvlm::quant::detail
