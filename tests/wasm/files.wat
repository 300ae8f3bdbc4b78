;; Tries to reach the host file system through every plausible descriptor and
;; reports what it saw as JSON:
;;   {"path_open":[errno for fd 0..10 opening "etc/passwd"],
;;    "path_open_abs":[errno for fd 0..10 opening "/etc/passwd"],
;;    "path_open_dot":[errno for fd 0..10 opening "."],
;;    "fd_read":[errno for fd_read on fd 3..10],
;;    "prestat":[errno for fd_prestat_get on fd 3..10],
;;    "opened":<number of successful path_open calls>,
;;    "read_ok":<number of successful fd_read calls>}
;; errno 0 means success; the sandbox must make every one of these fail.
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read"
    (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_get"
    (func $fd_prestat_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)

  ;; 0..63 scratch, 64.. strings, 4096.. read buffer, 8192.. output buffer
  (data (i32.const 64) "etc/passwd")        ;; 10 bytes
  (data (i32.const 80) "/etc/passwd")       ;; 11 bytes
  (data (i32.const 96) ".")                 ;; 1 byte
  (data (i32.const 128) "{\"path_open\":[")  ;; 14
  (data (i32.const 160) "],\"path_open_abs\":[") ;; 19
  (data (i32.const 192) "],\"path_open_dot\":[") ;; 19
  (data (i32.const 224) "],\"fd_read\":[")  ;; 13
  (data (i32.const 256) "],\"prestat\":[")  ;; 13
  (data (i32.const 288) "],\"opened\":")    ;; 11
  (data (i32.const 320) ",\"read_ok\":")    ;; 11

  (global $out (mut i32) (i32.const 8192))
  (global $opened (mut i32) (i32.const 0))
  (global $read_ok (mut i32) (i32.const 0))

  (func $emit (param $ptr i32) (param $len i32)
    (memory.copy (global.get $out) (local.get $ptr) (local.get $len))
    (global.set $out (i32.add (global.get $out) (local.get $len))))

  (func $emit_byte (param $b i32)
    (i32.store8 (global.get $out) (local.get $b))
    (global.set $out (i32.add (global.get $out) (i32.const 1))))

  ;; unsigned decimal
  (func $emit_u32 (param $n i32)
    (local $p i32)
    (local.set $p (i32.const 48))
    (loop $digits
      (local.set $p (i32.sub (local.get $p) (i32.const 1)))
      (i32.store8 (local.get $p)
        (i32.add (i32.const 48) (i32.rem_u (local.get $n) (i32.const 10))))
      (local.set $n (i32.div_u (local.get $n) (i32.const 10)))
      (br_if $digits (local.get $n)))
    (call $emit (local.get $p) (i32.sub (i32.const 48) (local.get $p))))

  ;; try path_open(fd, path) and emit the errno; read from any fd we got
  (func $try_open (param $fd i32) (param $path i32) (param $len i32)
    (local $rc i32)
    (local.set $rc
      (call $path_open (local.get $fd) (i32.const 1) (local.get $path) (local.get $len)
        (i32.const 0) (i64.const 0x1fffffff) (i64.const 0x1fffffff) (i32.const 0) (i32.const 48)))
    (if (i32.eqz (local.get $rc))
      (then
        (global.set $opened (i32.add (global.get $opened) (i32.const 1)))
        (call $try_read (i32.load (i32.const 48)))
        drop))
    (call $emit_u32 (local.get $rc)))

  (func $try_read (param $fd i32) (result i32)
    (local $rc i32)
    (i32.store (i32.const 0) (i32.const 4096))
    (i32.store (i32.const 4) (i32.const 4096))
    (local.set $rc (call $fd_read (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8)))
    (if (i32.eqz (local.get $rc))
      (then (global.set $read_ok (i32.add (global.get $read_ok) (i32.const 1)))))
    (local.get $rc))

  (func $open_all (param $path i32) (param $len i32)
    (local $fd i32)
    (loop $fds
      (if (local.get $fd) (then (call $emit_byte (i32.const 44))))
      (call $try_open (local.get $fd) (local.get $path) (local.get $len))
      (local.set $fd (i32.add (local.get $fd) (i32.const 1)))
      (br_if $fds (i32.le_u (local.get $fd) (i32.const 10)))))

  (func (export "_start")
    (local $fd i32)
    (call $emit (i32.const 128) (i32.const 14))
    (call $open_all (i32.const 64) (i32.const 10))
    (call $emit (i32.const 160) (i32.const 19))
    (call $open_all (i32.const 80) (i32.const 11))
    (call $emit (i32.const 192) (i32.const 19))
    (call $open_all (i32.const 96) (i32.const 1))

    (call $emit (i32.const 224) (i32.const 13))
    (local.set $fd (i32.const 3))
    (loop $reads
      (if (i32.gt_u (local.get $fd) (i32.const 3)) (then (call $emit_byte (i32.const 44))))
      (call $emit_u32 (call $try_read (local.get $fd)))
      (local.set $fd (i32.add (local.get $fd) (i32.const 1)))
      (br_if $reads (i32.le_u (local.get $fd) (i32.const 10))))

    (call $emit (i32.const 256) (i32.const 13))
    (local.set $fd (i32.const 3))
    (loop $prestats
      (if (i32.gt_u (local.get $fd) (i32.const 3)) (then (call $emit_byte (i32.const 44))))
      (call $emit_u32 (call $fd_prestat_get (local.get $fd) (i32.const 56)))
      (local.set $fd (i32.add (local.get $fd) (i32.const 1)))
      (br_if $prestats (i32.le_u (local.get $fd) (i32.const 10))))

    (call $emit (i32.const 288) (i32.const 11))
    (call $emit_u32 (global.get $opened))
    (call $emit (i32.const 320) (i32.const 11))
    (call $emit_u32 (global.get $read_ok))
    (call $emit_byte (i32.const 125))

    (i32.store (i32.const 16) (i32.const 8192))
    (i32.store (i32.const 20) (i32.sub (global.get $out) (i32.const 8192)))
    (drop (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24)))))
