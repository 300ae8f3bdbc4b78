;; Traps with an integer division by zero: an ordinary "trap" (memory is far
;; below the cap, so it must not be mistaken for a memory failure).
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (drop (i32.div_u (i32.const 1) (i32.load (i32.const 0))))))
