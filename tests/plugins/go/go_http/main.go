// go_http: a Proxy-Wasm HTTP filter written in Go (GOOS=wasip1, c-shared),
// with the ABI 0.2.1 written by hand. See tests/plugins/README.md for what it does.
package main

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// main is never run: the host calls _initialize (c-shared), then the callbacks.
func main() {}

// Configuration ("key=value" per line, like the C plugins), set in proxy_on_configure.
type config struct {
	localPath      string // answer a local response on this :path
	panicPath      string // a Go runtime panic on this :path
	printPath      string // write x-pwvm-go-print to stdout in fragments on this :path
	responseHeader string // added to every response
	allocKB        int    // allocated per request (GC pressure)
	tickMs         int    // proxy_set_tick_period_milliseconds
}

var (
	conf       config
	rootID     int32
	configured time.Time // time.Now() in proxy_on_configure: time.Since reads WASI's monotonic clock
	ticks      int
	requests   int
	lastTick   time.Duration // time.Since(configured) at the last tick
	paths      = map[int32]string{}
	keep       [][]byte // a little of each request's garbage survives until the next request
)

func parseConfig(text string) config {
	c := config{
		localPath:      "/go-local",
		panicPath:      "/go-panic",
		printPath:      "/go-print",
		responseHeader: "x-pwvm-go-response",
		allocKB:        64,
	}
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch k {
		case "local_path":
			c.localPath = v
		case "panic_path":
			c.panicPath = v
		case "print_path":
			c.printPath = v
		case "response_header":
			c.responseHeader = v
		case "alloc_kb":
			c.allocKB, _ = strconv.Atoi(v)
		case "tick_ms":
			c.tickMs, _ = strconv.Atoi(v)
		}
	}
	return c
}

//go:wasmexport proxy_abi_version_0_2_1
func proxyAbiVersion() {}

//go:wasmexport proxy_on_vm_start
func proxyOnVmStart(root int32, size int32) int32 {
	logf(logInfo, "go_http: vm_start root="+itoa(int(root))+" "+runtime.Version())
	return 1
}

//go:wasmexport proxy_on_configure
func proxyOnConfigure(root int32, size int32) int32 {
	text := ""
	if size > 0 {
		b, st := getBuffer(bufPluginConfig, size)
		if st != statusOK {
			logf(logError, "go_http: configuration status="+itoa(int(st)))
			return 0
		}
		text = string(b)
	}
	rootID = root
	conf = parseConfig(text)
	configured = time.Now()
	if conf.tickMs > 0 {
		proxySetTickPeriodMilliseconds(int32(conf.tickMs))
	}
	logf(logInfo, "go_http: configured root="+itoa(int(root))+" local_path="+conf.localPath+
		" panic_path="+conf.panicPath+" tick_ms="+itoa(conf.tickMs)+" alloc_kb="+itoa(conf.allocKB))
	return 1
}

//go:wasmexport proxy_on_tick
func proxyOnTick(root int32) {
	ticks++
	lastTick = time.Since(configured)
	logf(logDebug, "go_http: tick "+itoa(ticks)+" since_configure_ms="+itoa(int(lastTick.Milliseconds())))
}

//go:wasmexport proxy_on_context_create
func proxyOnContextCreate(id int32, parent int32) {}

// allocate makes about kb KiB of short-lived garbage in pieces of 1-8 KiB
// and keeps one piece alive until the next request; returns a checksum.
func allocate(kb int) int {
	sum := 0
	var last []byte
	for done := 0; done < kb*1024; {
		n := 1024 * (1 + (done/1024)%8)
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i + done)
		}
		sum += int(b[n-1])
		last = b
		done += n
	}
	keep = append(keep[:0], last)
	return sum
}

//go:wasmexport proxy_on_request_headers
func proxyOnRequestHeaders(id int32, numHeaders int32, endOfStream int32) int32 {
	requests++
	path := ""
	for _, h := range getHeaders(mapRequestHeaders) {
		logf(logInfo, "go_http: header "+h.key+": "+h.value)
		if h.key == ":path" {
			path = h.value
		}
	}
	paths[id] = path
	if path == conf.panicPath {
		panic("go_http: panic on " + path)
	}
	if path == conf.printPath {
		printFragments(id)
	}
	if path == conf.localPath {
		st := sendLocalResponse(200, "go_local", "go local "+itoa(requests),
			[]header{{"x-pwvm-go-local", "1"}})
		logf(logInfo, "go_http: local response status="+itoa(int(st)))
		return 1 // StopIteration
	}
	addHeader(mapRequestHeaders, "x-pwvm-go", "1")
	return 0
}

// printFragments writes the x-pwvm-go-print request header to stdout, with
// "\n" (backslash, n) as a newline, one byte per write: a log line assembled
// from many fd_write calls, with no newline at the end.
func printFragments(id int32) {
	value := ""
	for _, h := range getHeaders(mapRequestHeaders) {
		if h.key == "x-pwvm-go-print" {
			value = strings.ReplaceAll(h.value, `\n`, "\n")
		}
	}
	for i := 0; i < len(value); i++ {
		os.Stdout.Write([]byte{value[i]})
	}
}

//go:wasmexport proxy_on_response_headers
func proxyOnResponseHeaders(id int32, numHeaders int32, endOfStream int32) int32 {
	hostNs, st := hostTimeNs()
	now := time.Now()
	sum := allocate(conf.allocKB)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	addHeader(mapResponseHeaders, conf.responseHeader, "1")
	addHeader(mapResponseHeaders, "x-pwvm-go-path", paths[id])
	addHeader(mapResponseHeaders, "x-pwvm-go-requests", itoa(requests))
	addHeader(mapResponseHeaders, "x-pwvm-go-ticks", itoa(ticks))
	addHeader(mapResponseHeaders, "x-pwvm-go-host-time-ns", strconv.FormatInt(hostNs, 10))
	addHeader(mapResponseHeaders, "x-pwvm-go-host-time-status", itoa(int(st)))
	addHeader(mapResponseHeaders, "x-pwvm-go-now-ns", strconv.FormatInt(now.UnixNano(), 10))
	addHeader(mapResponseHeaders, "x-pwvm-go-since-configure-ns", strconv.FormatInt(int64(time.Since(configured)), 10))
	addHeader(mapResponseHeaders, "x-pwvm-go-last-tick-ns", strconv.FormatInt(int64(lastTick), 10))
	addHeader(mapResponseHeaders, "x-pwvm-go-alloc", itoa(conf.allocKB*1024)+","+itoa(sum))
	addHeader(mapResponseHeaders, "x-pwvm-go-gc", strconv.FormatUint(uint64(ms.NumGC), 10))
	return 0
}

//go:wasmexport proxy_on_done
func proxyOnDone(id int32) int32 { return 1 }

//go:wasmexport proxy_on_log
func proxyOnLog(id int32) {}

//go:wasmexport proxy_on_delete
func proxyOnDelete(id int32) { delete(paths, id) }

func itoa(n int) string { return strconv.Itoa(n) }
