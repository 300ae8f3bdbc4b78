;; Hostile output: a JSON array nested 10,000 deep ("[[[...]]]"), built in memory.
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (local $i i32)
    (loop $open
      (i32.store8 (i32.add (i32.const 64) (local.get $i)) (i32.const 91))
      (i32.store8 (i32.add (i32.const 10064) (local.get $i)) (i32.const 93))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $open (i32.lt_u (local.get $i) (i32.const 10000))))
    ;; iovec at 0: 20,000 bytes from offset 64; nwritten at 16
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const 20000))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))))
