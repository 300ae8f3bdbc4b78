;; A staged-files tool: reads /in/in.txt (fd 3, read-only preopen) and writes its bytes
;; to /out/copy.txt and /out/sub/copy.txt (fd 4, writable preopen), then tries to
;; write /in/nope.txt (must fail: /in is read-only) and prints
;;   {"copied":<bytes>,"write_in":<errno>}
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_create_directory"
    (func $mkdir (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 2)
  (data (i32.const 1024) "in.txt")        ;; 6
  (data (i32.const 1040) "copy.txt")      ;; 8
  (data (i32.const 1056) "sub")           ;; 3
  (data (i32.const 1072) "sub/copy.txt")  ;; 12
  (data (i32.const 1088) "nope.txt")      ;; 8
  (data (i32.const 1104) "{\"copied\":")  ;; 10
  (data (i32.const 1120) ",\"write_in\":") ;; 12

  (global $out (mut i32) (i32.const 8192))
  (func $emit (param $ptr i32) (param $len i32)
    (memory.copy (global.get $out) (local.get $ptr) (local.get $len))
    (global.set $out (i32.add (global.get $out) (local.get $len))))
  (func $emit_u32 (param $n i32)
    (local $p i32)
    (local.set $p (i32.const 48))
    (loop $digits
      (local.set $p (i32.sub (local.get $p) (i32.const 1)))
      (i32.store8 (local.get $p) (i32.add (i32.const 48) (i32.rem_u (local.get $n) (i32.const 10))))
      (local.set $n (i32.div_u (local.get $n) (i32.const 10)))
      (br_if $digits (local.get $n)))
    (call $emit (local.get $p) (i32.sub (i32.const 48) (local.get $p))))

  ;; open path (ptr,len) under dir fd with oflags/rights; returns fd or exits with errno
  (func $open (param $dir i32) (param $ptr i32) (param $len i32) (param $oflags i32) (param $rights i64) (result i32)
    (local $e i32)
    (local.set $e (call $path_open (local.get $dir) (i32.const 0) (local.get $ptr) (local.get $len)
        (local.get $oflags) (local.get $rights) (i64.const 0) (i32.const 0) (i32.const 16)))
    (if (local.get $e) (then (call $exit (i32.add (i32.const 100) (local.get $e)))))
    (i32.load (i32.const 16)))

  (func $write_all (param $fd i32) (param $len i32)
    (i32.store (i32.const 0) (i32.const 4096))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 24))))

  (func (export "_start")
    (local $fd i32) (local $n i32) (local $e i32)
    (local.set $fd (call $open (i32.const 3) (i32.const 1024) (i32.const 6) (i32.const 0) (i64.const 2)))
    (i32.store (i32.const 0) (i32.const 4096))
    (i32.store (i32.const 4) (i32.const 4000))
    (drop (call $fd_read (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 24)))
    (local.set $n (i32.load (i32.const 24)))
    (local.set $fd (call $open (i32.const 4) (i32.const 1040) (i32.const 8) (i32.const 9) (i64.const 0x40)))
    (call $write_all (local.get $fd) (local.get $n))
    (drop (call $fd_close (local.get $fd)))
    (drop (call $mkdir (i32.const 4) (i32.const 1056) (i32.const 3)))
    (local.set $fd (call $open (i32.const 4) (i32.const 1072) (i32.const 12) (i32.const 9) (i64.const 0x40)))
    (call $write_all (local.get $fd) (local.get $n))
    (drop (call $fd_close (local.get $fd)))
    ;; writing into the read-only /in must fail
    (local.set $e (call $path_open (i32.const 3) (i32.const 0) (i32.const 1088) (i32.const 8)
        (i32.const 9) (i64.const 0x40) (i64.const 0) (i32.const 0) (i32.const 16)))
    (call $emit (i32.const 1104) (i32.const 10))
    (call $emit_u32 (local.get $n))
    (call $emit (i32.const 1120) (i32.const 12))
    (call $emit_u32 (local.get $e))
    (i32.store8 (global.get $out) (i32.const 125))
    (global.set $out (i32.add (global.get $out) (i32.const 1)))
    (i32.store (i32.const 0) (i32.const 8192))
    (i32.store (i32.const 4) (i32.sub (global.get $out) (i32.const 8192)))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 24)))))
