;; Asks the host to sleep for 60 s with poll_oneoff (a relative clock
;; subscription). An epoch deadline cannot interrupt a blocking host call,
;; so the sandbox must refuse it; reports {"poll_errno":N}.
(module
  (import "wasi_snapshot_preview1" "poll_oneoff"
    (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 512) "{\"poll_errno\":")  ;; 14
  (func (export "_start")
    (local $rc i32)
    (local $p i32)
    ;; subscription at 0 (48 bytes): userdata u64, tag u8 = 0 (clock),
    ;; clock: id u32 @16, timeout u64 @24, precision u64 @32, flags u16 @40
    (i64.store (i32.const 0) (i64.const 42))
    (i32.store8 (i32.const 8) (i32.const 0))
    (i32.store (i32.const 16) (i32.const 1))                    ;; monotonic
    (i64.store (i32.const 24) (i64.const 60000000000))          ;; 60 s in ns
    (i64.store (i32.const 32) (i64.const 0))
    (i32.store16 (i32.const 40) (i32.const 0))
    ;; event out at 64, nevents at 128
    (local.set $rc (call $poll_oneoff (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))
    ;; output: prefix + decimal errno + "}"
    (memory.copy (i32.const 1024) (i32.const 512) (i32.const 14))
    (local.set $p (i32.const 1038))
    (if (i32.ge_u (local.get $rc) (i32.const 10))
      (then
        (i32.store8 (local.get $p) (i32.add (i32.const 48) (i32.div_u (local.get $rc) (i32.const 10))))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))))
    (i32.store8 (local.get $p) (i32.add (i32.const 48) (i32.rem_u (local.get $rc) (i32.const 10))))
    (i32.store8 (i32.add (local.get $p) (i32.const 1)) (i32.const 125))
    (i32.store (i32.const 200) (i32.const 1024))
    (i32.store (i32.const 204) (i32.sub (i32.add (local.get $p) (i32.const 2)) (i32.const 1024)))
    (drop (call $fd_write (i32.const 1) (i32.const 200) (i32.const 1) (i32.const 208)))))
