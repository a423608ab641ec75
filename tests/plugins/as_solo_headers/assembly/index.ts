// proxywasm-vm test plugin "as_solo_headers".
// SDK: @solo-io/proxy-runtime 0.1.8 (AssemblyScript 0.14.9), ABI proxy_abi_version_0_2_0.
// Root context name (answer the `plugin_root_id` property with it): "pwvm_solo_headers".
// Behaviour is documented in tests/plugins/README.md.
export * from "@solo-io/proxy-runtime/proxy";
import {
  RootContext, Context, registerRootContext, log, LogLevelValues,
  FilterHeadersStatusValues, GrpcStatusValues, stream_context, send_local_response,
  HeaderPair,
} from "@solo-io/proxy-runtime";

const ROOT_ID = "pwvm_solo_headers";

class SoloHeadersRoot extends RootContext {
  createContext(context_id: u32): Context {
    return new SoloHeaders(context_id, this);
  }

  onConfigure(configuration_size: u32): bool {
    const ok = super.onConfigure(configuration_size);
    log(LogLevelValues.info, "as_solo_headers configured: " + this.getConfiguration());
    return ok;
  }
}

class SoloHeaders extends Context {
  constructor(context_id: u32, root_context: SoloHeadersRoot) {
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
    log(LogLevelValues.info, "as_solo_headers request headers: " + headers.length.toString());
    if (deny) {
      send_local_response(403, "pwvm_denied", String.UTF8.encode("denied"), new Array<HeaderPair>(), -1 as GrpcStatusValues);
      return FilterHeadersStatusValues.StopIteration;
    }
    stream_context.headers.request.add("x-pwvm-sdk", "solo");
    return FilterHeadersStatusValues.Continue;
  }

  onResponseHeaders(num_headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    stream_context.headers.response.add("x-pwvm-response", "1");
    return FilterHeadersStatusValues.Continue;
  }
}

registerRootContext((context_id: u32): RootContext => {
  return new SoloHeadersRoot(context_id);
}, ROOT_ID);
