// The Proxy-Wasm ABI 0.2.1 host functions this plugin uses, declared by hand
// from the ABI specification (no SDK), and the helpers around them.

package main

import (
	"encoding/binary"
	"unsafe"
)

// Status values (proxy_status_t).
const (
	statusOK       = 0
	statusNotFound = 1
)

// Log levels.
const (
	logTrace    = 0
	logDebug    = 1
	logInfo     = 2
	logWarn     = 3
	logError    = 4
	logCritical = 5
)

// Header map and buffer types.
const (
	mapRequestHeaders  = 0
	mapResponseHeaders = 2
	bufPluginConfig    = 7
)

//go:wasmimport env proxy_log
func proxyLog(level int32, msg unsafe.Pointer, size int32) int32

//go:wasmimport env proxy_get_buffer_bytes
func proxyGetBufferBytes(bufType int32, start int32, maxSize int32, retPtr unsafe.Pointer, retSize unsafe.Pointer) int32

//go:wasmimport env proxy_get_header_map_pairs
func proxyGetHeaderMapPairs(mapType int32, retPtr unsafe.Pointer, retSize unsafe.Pointer) int32

//go:wasmimport env proxy_add_header_map_value
func proxyAddHeaderMapValue(mapType int32, key unsafe.Pointer, keySize int32, value unsafe.Pointer, valueSize int32) int32

//go:wasmimport env proxy_send_local_response
func proxySendLocalResponse(status int32, details unsafe.Pointer, detailsSize int32, body unsafe.Pointer, bodySize int32,
	headers unsafe.Pointer, headersSize int32, grpcStatus int32) int32

//go:wasmimport env proxy_set_tick_period_milliseconds
func proxySetTickPeriodMilliseconds(period int32) int32

//go:wasmimport env proxy_get_current_time_nanoseconds
func proxyGetCurrentTimeNanoseconds(ret unsafe.Pointer) int32

// The host asks for memory through proxy_on_memory_allocate while a host call
// that returns data is running; the buffers stay referenced here (so the
// garbage collector keeps them) until the caller has copied the data out.
var hostBuffers [][]byte

//go:wasmexport proxy_on_memory_allocate
func proxyOnMemoryAllocate(size uint32) unsafe.Pointer {
	if size == 0 {
		size = 1
	}
	b := make([]byte, size)
	hostBuffers = append(hostBuffers, b)
	return unsafe.Pointer(&b[0])
}

// takeHostBytes copies size bytes the host wrote at ptr and drops the
// references to every buffer handed to the host.
func takeHostBytes(ptr uint32, size uint32) []byte {
	out := make([]byte, size)
	if size > 0 {
		copy(out, unsafe.Slice((*byte)(unsafe.Pointer(uintptr(ptr))), size))
	}
	hostBuffers = hostBuffers[:0]
	return out
}

func bytesPtr(b []byte) unsafe.Pointer {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Pointer(&b[0])
}

func logf(level int32, msg string) {
	b := []byte(msg)
	proxyLog(level, bytesPtr(b), int32(len(b)))
}

func getBuffer(bufType int32, size int32) ([]byte, int32) {
	var ptr, n uint32
	st := proxyGetBufferBytes(bufType, 0, size, unsafe.Pointer(&ptr), unsafe.Pointer(&n))
	if st != statusOK || ptr == 0 {
		hostBuffers = hostBuffers[:0]
		return nil, st
	}
	return takeHostBytes(ptr, n), st
}

type header struct{ key, value string }

// getHeaders reads a whole header map: u32 count, count (key_len, value_len)
// pairs, then every key and value followed by a NUL byte.
func getHeaders(mapType int32) []header {
	var ptr, n uint32
	if proxyGetHeaderMapPairs(mapType, unsafe.Pointer(&ptr), unsafe.Pointer(&n)) != statusOK || ptr == 0 || n < 4 {
		hostBuffers = hostBuffers[:0]
		return nil
	}
	data := takeHostBytes(ptr, n)
	count := int(binary.LittleEndian.Uint32(data))
	if count > (len(data)-4)/8 {
		return nil
	}
	out := make([]header, 0, count)
	pos := 4 + 8*count
	for i := 0; i < count; i++ {
		kl := int(binary.LittleEndian.Uint32(data[4+8*i:]))
		vl := int(binary.LittleEndian.Uint32(data[8+8*i:]))
		if pos+kl+1+vl+1 > len(data) {
			break
		}
		k := string(data[pos : pos+kl])
		pos += kl + 1
		v := string(data[pos : pos+vl])
		pos += vl + 1
		out = append(out, header{k, v})
	}
	return out
}

func addHeader(mapType int32, key, value string) int32 {
	k, v := []byte(key), []byte(value)
	return proxyAddHeaderMapValue(mapType, bytesPtr(k), int32(len(k)), bytesPtr(v), int32(len(v)))
}

// serializeHeaders encodes pairs the way the host reads them (see getHeaders).
func serializeHeaders(hs []header) []byte {
	size := 4 + 8*len(hs)
	for _, h := range hs {
		size += len(h.key) + len(h.value) + 2
	}
	out := make([]byte, size)
	binary.LittleEndian.PutUint32(out, uint32(len(hs)))
	pos := 4 + 8*len(hs)
	for i, h := range hs {
		binary.LittleEndian.PutUint32(out[4+8*i:], uint32(len(h.key)))
		binary.LittleEndian.PutUint32(out[8+8*i:], uint32(len(h.value)))
		pos += copy(out[pos:], h.key) + 1
		pos += copy(out[pos:], h.value) + 1
	}
	return out
}

func sendLocalResponse(status int32, details string, body string, hs []header) int32 {
	d, b, h := []byte(details), []byte(body), serializeHeaders(hs)
	return proxySendLocalResponse(status, bytesPtr(d), int32(len(d)), bytesPtr(b), int32(len(b)),
		bytesPtr(h), int32(len(h)), -1)
}

func hostTimeNs() (int64, int32) {
	var t int64
	st := proxyGetCurrentTimeNanoseconds(unsafe.Pointer(&t))
	return t, st
}
