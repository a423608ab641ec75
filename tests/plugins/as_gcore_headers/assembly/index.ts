// proxywasm-vm test plugin "as_gcore_headers".
// SDK: @gcoredev/proxy-wasm-sdk-as 1.2.3 (AssemblyScript 0.28.20 + @assemblyscript/wasi-shim 0.1.0),
// ABI proxy_abi_version_0_2_1. The SDK logs through WASI fd_write (stdout), not proxy_log.
// Behaviour is documented in tests/plugins/README.md.
export * from "@gcoredev/proxy-wasm-sdk-as/assembly/proxy";
import {
  RootContext, Context, registerRootContext, log, LogLevelValues,
  FilterHeadersStatusValues, stream_context, send_http_response, HeaderPair,
} from "@gcoredev/proxy-wasm-sdk-as/assembly";

class GcoreHeadersRoot extends RootContext {
  createContext(context_id: u32): Context {
    return new GcoreHeaders(context_id, this);
  }

  onConfigure(configuration_size: u32): bool {
    const ok = super.onConfigure(configuration_size);
    log(LogLevelValues.info, "as_gcore_headers configured: " + this.getConfiguration());
    return ok;
  }
}

class GcoreHeaders extends Context {
  constructor(context_id: u32, root_context: GcoreHeadersRoot) {
    super(context_id, root_context);
  }

  onRequestHeaders(num_headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    const headers = stream_context.headers.request.get_headers();
    let deny = false;
    for (let i = 0; i < headers.length; i++) {
      const name = String.UTF8.decode(headers[i].key);
      if (name.toLowerCase() == "x-pwvm-deny") {
        deny = true;
      }
    }
    log(LogLevelValues.info, "as_gcore_headers request headers: " + headers.length.toString());
    if (deny) {
      send_http_response(403, "pwvm_denied", String.UTF8.encode("denied"), new Array<HeaderPair>());
      return FilterHeadersStatusValues.StopIteration;
    }
    stream_context.headers.request.add("x-pwvm-sdk", "gcore");
    const config = this.root_context.getConfiguration();
    if (config.length > 0) {
      stream_context.headers.request.add("x-pwvm-config", config);
    }
    return FilterHeadersStatusValues.Continue;
  }

  onResponseHeaders(num_headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    stream_context.headers.response.add("x-pwvm-response", "1");
    return FilterHeadersStatusValues.Continue;
  }
}

registerRootContext((context_id: u32): RootContext => {
  return new GcoreHeadersRoot(context_id);
}, "pwvm_gcore_headers");
