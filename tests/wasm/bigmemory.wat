;; Declares 512 pages (32 MiB) of initial memory: instantiation must be
;; refused under a 16 MiB cap.
(module
  (memory (export "memory") 512)
  (func (export "_start")))
