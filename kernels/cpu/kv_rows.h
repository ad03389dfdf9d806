// KV rows between the cache's storage dtype and float32, one row at a time. Kernels that
// read or write cached rows outside attention (re-rotation, MiniCache's merges and
// restores, key norms, appends) widen a row, compute in float32 and round back once.
// F16 goes through F16C where the CPU has it: GCC converts _Float16 one value at a time in
// software otherwise, which made those kernels cost more than a whole decode step. The
// rounding is the same either way (nearest even).
#pragma once
#include "backend.h"

namespace kvlm::kv_rows {

void widen(DType dtype, const void* src, float* dst, int n);
void narrow(DType dtype, const float* src, void* dst, int n);

}  // namespace kvlm::kv_rows
