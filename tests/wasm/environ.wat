;; Reports what it can see of its environment and arguments as JSON:
;;   {"environ_count":N,"environ_bytes":N,"argc":N,"argv_bytes":N,"argv0":"..."}
;; (argv0 is copied verbatim, so it is only valid JSON for plain names.)
(module
  (import "wasi_snapshot_preview1" "environ_sizes_get"
    (func $environ_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get"
    (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get"
    (func $args_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)

  (data (i32.const 128) "{\"environ_count\":")  ;; 17
  (data (i32.const 160) ",\"environ_bytes\":")  ;; 17
  (data (i32.const 192) ",\"argc\":")           ;; 8
  (data (i32.const 224) ",\"argv_bytes\":")     ;; 14
  (data (i32.const 256) ",\"argv0\":\"")        ;; 10

  (global $out (mut i32) (i32.const 8192))

  (func $emit (param $ptr i32) (param $len i32)
    (memory.copy (global.get $out) (local.get $ptr) (local.get $len))
    (global.set $out (i32.add (global.get $out) (local.get $len))))

  (func $emit_u32 (param $n i32)
    (local $p i32)
    (local.set $p (i32.const 96))
    (loop $digits
      (local.set $p (i32.sub (local.get $p) (i32.const 1)))
      (i32.store8 (local.get $p)
        (i32.add (i32.const 48) (i32.rem_u (local.get $n) (i32.const 10))))
      (local.set $n (i32.div_u (local.get $n) (i32.const 10)))
      (br_if $digits (local.get $n)))
    (call $emit (local.get $p) (i32.sub (i32.const 96) (local.get $p))))

  (func (export "_start")
    (local $argc i32)
    (local $argv_bytes i32)
    (drop (call $environ_sizes_get (i32.const 0) (i32.const 4)))
    (drop (call $args_sizes_get (i32.const 8) (i32.const 12)))
    (local.set $argc (i32.load (i32.const 8)))
    (local.set $argv_bytes (i32.load (i32.const 12)))

    (call $emit (i32.const 128) (i32.const 17))
    (call $emit_u32 (i32.load (i32.const 0)))
    (call $emit (i32.const 160) (i32.const 17))
    (call $emit_u32 (i32.load (i32.const 4)))
    (call $emit (i32.const 192) (i32.const 8))
    (call $emit_u32 (local.get $argc))
    (call $emit (i32.const 224) (i32.const 14))
    (call $emit_u32 (local.get $argv_bytes))
    (call $emit (i32.const 256) (i32.const 10))
    (if (i32.and (i32.ge_u (local.get $argc) (i32.const 1))
                 (i32.le_u (local.get $argv_bytes) (i32.const 4096)))
      (then
        ;; pointers at 1024 (argc <= 64 assumed), strings at 4096
        (if (i32.le_u (local.get $argc) (i32.const 64))
          (then
            (drop (call $args_get (i32.const 1024) (i32.const 4096)))
            ;; argv[0] is NUL-terminated: copy without the NUL
            (call $emit (i32.load (i32.const 1024))
              (i32.sub
                (select
                  (i32.load (i32.const 1028))
                  (i32.add (i32.const 4096) (local.get $argv_bytes))
                  (i32.gt_u (local.get $argc) (i32.const 1)))
                (i32.add (i32.load (i32.const 1024)) (i32.const 1))))))))
    (i32.store8 (global.get $out) (i32.const 34))
    (i32.store8 (i32.add (global.get $out) (i32.const 1)) (i32.const 125))
    (global.set $out (i32.add (global.get $out) (i32.const 2)))

    (i32.store (i32.const 16) (i32.const 8192))
    (i32.store (i32.const 20) (i32.sub (global.get $out) (i32.const 8192)))
    (drop (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24)))))
