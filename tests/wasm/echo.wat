;; Well-behaved: reads all of stdin and writes it back to stdout unchanged.
;; Buffer: 64 KiB at offset 1024 (one memory page of 2 is scratch + buffer);
;; larger inputs are streamed through in chunks.
(module
  (import "wasi_snapshot_preview1" "fd_read"
    (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 2)
  ;; iovec for reading at 0, iovec for writing at 16, nread at 32, nwritten at 36
  (func (export "_start")
    (local $n i32)
    (local $off i32)
    (local $rc i32)
    (loop $read
      (i32.store (i32.const 0) (i32.const 1024))
      (i32.store (i32.const 4) (i32.const 65536))
      (local.set $rc (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 32)))
      (if (local.get $rc) (then (call $proc_exit (i32.const 2))))
      (local.set $n (i32.load (i32.const 32)))
      (if (i32.gt_u (local.get $n) (i32.const 0))
        (then
          (local.set $off (i32.const 0))
          (loop $write
            (i32.store (i32.const 16) (i32.add (i32.const 1024) (local.get $off)))
            (i32.store (i32.const 20) (i32.sub (local.get $n) (local.get $off)))
            (local.set $rc (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 36)))
            (if (local.get $rc) (then (call $proc_exit (i32.const 3))))
            (local.set $off (i32.add (local.get $off) (i32.load (i32.const 36))))
            (br_if $write (i32.lt_u (local.get $off) (local.get $n))))
          (br $read))))))
