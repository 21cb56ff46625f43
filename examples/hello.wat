;; A WASI preview 1 command that greets and exits 0. The warmcache README runs it twice:
;; the first run compiles it, the second loads the verified artifact from the cache.
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; iovec at 0: pointer 16, length 22
  (data (i32.const 0) "\10\00\00\00\16\00\00\00")
  (data (i32.const 16) "Hello from warmcache!\0a")
  (func (export "_start")
    (drop (call $fd_write
      (i32.const 1)    ;; stdout
      (i32.const 0)    ;; iovecs
      (i32.const 1)    ;; one iovec
      (i32.const 8)))) ;; where to write the byte count
)
