// Node-API binding of the loader: the module init. Every error crosses into JS as an
// instance of the TensorizeError class handed to init() (addon_errors.cc), with a stable .code.
#include "addon.h"
#include "config.h"

namespace {

Napi::Object Module(Napi::Env env, Napi::Object exports) {
  using namespace tz::addon;
  // The native settings (TENSORIZE_*, config.h) are read now, once: as the addon loads.
  (void)tz::config();
  registerErrors(env, exports);
  registerLoad(env, exports);
  registerHandle(env, exports);
  registerCopy(env, exports);
  registerFetch(env, exports);
  registerHash(env, exports);
  registerCache(env, exports);
  registerCrypt(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(tensorize_native, Module)
