;; Grows linear memory one page at a time, touching every new page so the
;; host would really have to back it. When memory.grow is refused (-1) it
;; traps with `unreachable`, like an allocator aborting on OOM.
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (local $old i32)
    (loop $grow
      (local.set $old (memory.grow (i32.const 1)))
      (if (i32.eq (local.get $old) (i32.const -1))
        (then unreachable))
      ;; write one byte into every 4 KiB of the new page
      (i32.store8 (i32.mul (local.get $old) (i32.const 65536)) (i32.const 1))
      (i32.store8 (i32.add (i32.mul (local.get $old) (i32.const 65536)) (i32.const 4096)) (i32.const 1))
      (i32.store8 (i32.add (i32.mul (local.get $old) (i32.const 65536)) (i32.const 32768)) (i32.const 1))
      (i32.store8 (i32.add (i32.mul (local.get $old) (i32.const 65536)) (i32.const 65535)) (i32.const 1))
      br $grow)))
