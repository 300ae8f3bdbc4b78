;; Spins forever without calling the host: must be stopped by the epoch
;; deadline (timeout) or by fuel (out_of_fuel).
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $forever
      br $forever)))
