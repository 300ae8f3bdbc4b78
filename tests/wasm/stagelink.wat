;; A staged-files tool that plants a symbolic link in /out pointing out of it
;; (../../../etc/passwd) and prints {}; the host must not follow it.
(module
  (import "wasi_snapshot_preview1" "path_symlink"
    (func $symlink (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 1024) "../../../../etc/passwd")  ;; 22
  (data (i32.const 1056) "evil")                    ;; 4
  (data (i32.const 1072) "{}")
  (func (export "_start")
    (drop (call $symlink (i32.const 1024) (i32.const 22) (i32.const 3) (i32.const 1056) (i32.const 4)))
    (i32.store (i32.const 0) (i32.const 1072))
    (i32.store (i32.const 4) (i32.const 2))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 24)))))
