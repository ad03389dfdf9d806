// full: keeps every token. The baseline every compression method is compared with.
#include "kv/strategies/strategies.h"

namespace kvlm {

class FullStrategy final : public CopyableStrategy<FullStrategy> {
 public:
  std::string name() const override { return "full"; }
};

MethodInfo full_method_info() {
  return {"full", "keep every token (no compression)", {}, "", {}};
}

std::unique_ptr<KVStrategy> make_full(const Params& params) {
  params.reject_unknown("full", {});
  return std::make_unique<FullStrategy>();
}

}  // namespace kvlm
