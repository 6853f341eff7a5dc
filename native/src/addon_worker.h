// Promise-returning work on a libuv thread, the one AsyncWorker of the addon.
#pragma once
#include <napi.h>

#include <functional>
#include <utility>

#include "addon_errors.h"

namespace tz::addon {

// The Result of work that hands back nothing but its Error.
struct NoResult {};

struct AsyncHooks {
  // Runs on the main thread before the promise settles, either way (a load's `running = false`).
  std::function<void()> settled;
  // Kept alive until the work is over (a buffer it reads).
  Napi::Value keep;
};

// work(result) runs on a libuv thread; then, on the main thread, the promise resolves with
// done(env, result) (undefined when done is empty) or rejects with makeError(env, error). A
// C++ exception out of work rejects with E_NATIVE and its message.
template <typename Result>
Napi::Promise runAsync(Napi::Env env, std::function<Error(Result&)> work, std::function<Napi::Value(Napi::Env, Result&)> done, AsyncHooks hooks = {}) {
  class Worker : public Napi::AsyncWorker {
   public:
    Worker(Napi::Env env, std::function<Error(Result&)> work, std::function<Napi::Value(Napi::Env, Result&)> done, AsyncHooks hooks)
        : Napi::AsyncWorker(env), work_(std::move(work)), done_(std::move(done)), settled_(std::move(hooks.settled)), deferred_(Napi::Promise::Deferred::New(env)) {
      if (!hooks.keep.IsEmpty()) keep_ = Napi::Persistent(hooks.keep);
    }
    Napi::Promise promise() { return deferred_.Promise(); }

   private:
    void Execute() override { err_ = work_(result_); }
    void OnOK() override {
      Napi::Env env = Env();
      if (settled_) settled_();
      if (!err_.ok()) deferred_.Reject(makeError(env, err_));
      else deferred_.Resolve(done_ ? done_(env, result_) : env.Undefined());
    }
    void OnError(const Napi::Error& e) override {
      if (settled_) settled_();
      deferred_.Reject(makeError(Env(), Code::E_NATIVE, e.Message()));
    }

    std::function<Error(Result&)> work_;
    std::function<Napi::Value(Napi::Env, Result&)> done_;
    std::function<void()> settled_;
    Napi::Reference<Napi::Value> keep_;
    Napi::Promise::Deferred deferred_;
    Result result_{};
    Error err_;
  };
  auto* w = new Worker(env, std::move(work), std::move(done), std::move(hooks));
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

}  // namespace tz::addon
