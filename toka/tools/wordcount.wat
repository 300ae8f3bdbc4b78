;; wordcount — Toka WASM tool (WASI preview1 command).
;;
;; Input  (stdin):  {"text": "<string>"}
;; Output (stdout): {"bytes":B,"chars":C,"lines":L,"words":W}
;;   bytes = UTF-8 length of the text, chars = Unicode code points,
;;   lines = number of "\n", words = maximal runs of non-whitespace where
;;   whitespace is ASCII space, \t, \n, \v, \f, \r (like `wc -w` in the C locale).
;; Errors: exit 2 with a reason on stderr for invalid input.
;; Build: python -m toka.tools.build
(module
  ;; ---------------------------------------------------------------------------
  ;; Shared runtime (identical in every Toka WAT tool): stdin reader, a strict
  ;; JSON reader (RFC 8259), an output buffer and error exits.
  ;;
  ;; Memory layout: [0,16) iovec + result word, [64,128) number formatting,
  ;; [128,256) shared messages, [256,1024) tool constants, input from 65536,
  ;; then a bump heap for decoded strings and the output buffer.
  ;; Exit codes: 2 invalid input (reason on stderr), 3 out of memory, 4 I/O.
  ;; ---------------------------------------------------------------------------
  (import "wasi_snapshot_preview1" "fd_read"
    (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 2)

  (data (i32.const 128) "invalid JSON input\n")      ;; 19
  (data (i32.const 160) "out of memory\n")           ;; 14
  (data (i32.const 176) "I/O error\n")               ;; 10
  (data (i32.const 192) "JSON nested too deeply\n")  ;; 23
  (data (i32.const 224) "true")
  (data (i32.const 228) "false")
  (data (i32.const 236) "null")

  (global $in_end (mut i32) (i32.const 65536))  ;; input is [65536, $in_end)
  (global $heap (mut i32) (i32.const 65536))    ;; first free byte after the input
  (global $dlen (mut i32) (i32.const 0))        ;; length of the last decoded string
  (global $depth (mut i32) (i32.const 0))       ;; container nesting while skipping
  (global $out_start (mut i32) (i32.const 0))
  (global $out (mut i32) (i32.const 0))

  ;; write a message to stderr and exit with `code`
  (func $die (param $code i32) (param $msg i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $msg))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8)))
    (call $proc_exit (local.get $code))
    unreachable)

  (func $bad
    (call $die (i32.const 2) (i32.const 128) (i32.const 19)))

  ;; grow memory until [0, end) is addressable
  (func $ensure (param $end i32)
    (local $have i32)
    (local.set $have (i32.shl (memory.size) (i32.const 16)))
    (if (i32.gt_u (local.get $end) (local.get $have))
      (then
        (if (i32.eq
              (memory.grow
                (i32.shr_u
                  (i32.add (i32.sub (local.get $end) (local.get $have)) (i32.const 65535))
                  (i32.const 16)))
              (i32.const -1))
          (then (call $die (i32.const 3) (i32.const 160) (i32.const 14)))))))

  ;; read all of stdin to [65536, $in_end)
  (func $read_input
    (local $n i32)
    (loop $more
      (call $ensure (i32.add (global.get $in_end) (i32.const 65536)))
      (i32.store (i32.const 0) (global.get $in_end))
      (i32.store (i32.const 4) (i32.const 65536))
      (if (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8))
        (then (call $die (i32.const 4) (i32.const 176) (i32.const 10))))
      (local.set $n (i32.load (i32.const 8)))
      (global.set $in_end (i32.add (global.get $in_end) (local.get $n)))
      (br_if $more (local.get $n)))
    (global.set $heap
      (i32.and (i32.add (global.get $in_end) (i32.const 7)) (i32.const -8))))

  ;; input byte at p, or -1 past the end
  (func $byte_at (param $p i32) (result i32)
    (if (result i32) (i32.lt_u (local.get $p) (global.get $in_end))
      (then (i32.load8_u (local.get $p)))
      (else (i32.const -1))))

  (func $is_digit (param $c i32) (result i32)
    (i32.lt_u (i32.sub (local.get $c) (i32.const 48)) (i32.const 10)))

  (func $skip_ws (param $p i32) (result i32)
    (local $c i32)
    (block $done
      (loop $next
        (local.set $c (call $byte_at (local.get $p)))
        (br_if $done
          (i32.eqz
            (i32.or
              (i32.or (i32.eq (local.get $c) (i32.const 32)) (i32.eq (local.get $c) (i32.const 9)))
              (i32.or (i32.eq (local.get $c) (i32.const 10)) (i32.eq (local.get $c) (i32.const 13))))))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $next)))
    (local.get $p))

  ;; require byte c at p; returns p + 1
  (func $expect (param $p i32) (param $c i32) (result i32)
    (if (i32.ne (call $byte_at (local.get $p)) (local.get $c)) (then (call $bad)))
    (i32.add (local.get $p) (i32.const 1)))

  (func $hex_digit (param $c i32) (result i32)
    (if (call $is_digit (local.get $c))
      (then (return (i32.sub (local.get $c) (i32.const 48)))))
    (if (i32.lt_u (i32.sub (local.get $c) (i32.const 97)) (i32.const 6))
      (then (return (i32.sub (local.get $c) (i32.const 87)))))
    (if (i32.lt_u (i32.sub (local.get $c) (i32.const 65)) (i32.const 6))
      (then (return (i32.sub (local.get $c) (i32.const 55)))))
    (call $bad)
    (i32.const 0))

  ;; four hex digits at p
  (func $hex4 (param $p i32) (result i32)
    (i32.or
      (i32.or
        (i32.shl (call $hex_digit (call $byte_at (local.get $p))) (i32.const 12))
        (i32.shl (call $hex_digit (call $byte_at (i32.add (local.get $p) (i32.const 1)))) (i32.const 8)))
      (i32.or
        (i32.shl (call $hex_digit (call $byte_at (i32.add (local.get $p) (i32.const 2)))) (i32.const 4))
        (call $hex_digit (call $byte_at (i32.add (local.get $p) (i32.const 3)))))))

  ;; the byte a one-character escape (\" \\ \/ \b \f \n \r \t) stands for
  (func $unescape (param $c i32) (result i32)
    (if (i32.or (i32.eq (local.get $c) (i32.const 34))
                (i32.or (i32.eq (local.get $c) (i32.const 92)) (i32.eq (local.get $c) (i32.const 47))))
      (then (return (local.get $c))))
    (if (i32.eq (local.get $c) (i32.const 98)) (then (return (i32.const 8))))
    (if (i32.eq (local.get $c) (i32.const 102)) (then (return (i32.const 12))))
    (if (i32.eq (local.get $c) (i32.const 110)) (then (return (i32.const 10))))
    (if (i32.eq (local.get $c) (i32.const 114)) (then (return (i32.const 13))))
    (if (i32.eq (local.get $c) (i32.const 116)) (then (return (i32.const 9))))
    (call $bad)
    (i32.const 0))

  ;; store byte c at out + i unless out is 0 (skip mode)
  (func $put (param $out i32) (param $i i32) (param $c i32)
    (if (local.get $out)
      (then (i32.store8 (i32.add (local.get $out) (local.get $i)) (local.get $c)))))

  ;; UTF-8 encode code point cp at out + n; returns the new n
  (func $put_utf8 (param $out i32) (param $n i32) (param $cp i32) (result i32)
    (if (i32.lt_u (local.get $cp) (i32.const 0x80))
      (then
        (call $put (local.get $out) (local.get $n) (local.get $cp))
        (return (i32.add (local.get $n) (i32.const 1)))))
    (if (i32.lt_u (local.get $cp) (i32.const 0x800))
      (then
        (call $put (local.get $out) (local.get $n)
          (i32.or (i32.const 0xC0) (i32.shr_u (local.get $cp) (i32.const 6))))
        (call $put (local.get $out) (i32.add (local.get $n) (i32.const 1))
          (i32.or (i32.const 0x80) (i32.and (local.get $cp) (i32.const 0x3F))))
        (return (i32.add (local.get $n) (i32.const 2)))))
    (if (i32.lt_u (local.get $cp) (i32.const 0x10000))
      (then
        (call $put (local.get $out) (local.get $n)
          (i32.or (i32.const 0xE0) (i32.shr_u (local.get $cp) (i32.const 12))))
        (call $put (local.get $out) (i32.add (local.get $n) (i32.const 1))
          (i32.or (i32.const 0x80) (i32.and (i32.shr_u (local.get $cp) (i32.const 6)) (i32.const 0x3F))))
        (call $put (local.get $out) (i32.add (local.get $n) (i32.const 2))
          (i32.or (i32.const 0x80) (i32.and (local.get $cp) (i32.const 0x3F))))
        (return (i32.add (local.get $n) (i32.const 3)))))
    (call $put (local.get $out) (local.get $n)
      (i32.or (i32.const 0xF0) (i32.shr_u (local.get $cp) (i32.const 18))))
    (call $put (local.get $out) (i32.add (local.get $n) (i32.const 1))
      (i32.or (i32.const 0x80) (i32.and (i32.shr_u (local.get $cp) (i32.const 12)) (i32.const 0x3F))))
    (call $put (local.get $out) (i32.add (local.get $n) (i32.const 2))
      (i32.or (i32.const 0x80) (i32.and (i32.shr_u (local.get $cp) (i32.const 6)) (i32.const 0x3F))))
    (call $put (local.get $out) (i32.add (local.get $n) (i32.const 3))
      (i32.or (i32.const 0x80) (i32.and (local.get $cp) (i32.const 0x3F))))
    (i32.add (local.get $n) (i32.const 4)))

  ;; Decode the JSON string starting at the quote at p into UTF-8 at out
  ;; (out = 0: validate only). Returns the position after the closing quote
  ;; and leaves the decoded length in $dlen. Unpaired surrogate escapes become
  ;; U+FFFD. The decoded form is never longer than the source.
  (func $decode_string (param $p i32) (param $out i32) (result i32)
    (local $c i32)
    (local $n i32)
    (local $cp i32)
    (local $lo i32)
    (local.set $p (call $expect (local.get $p) (i32.const 34)))
    (if (local.get $out)
      (then
        (call $ensure
          (i32.add (local.get $out) (i32.sub (global.get $in_end) (local.get $p))))))
    (block $end
      (loop $next
        ;; fast path for unescaped bytes (the common case), inlined
        (if (i32.ge_u (local.get $p) (global.get $in_end)) (then (call $bad)))
        (local.set $c (i32.load8_u (local.get $p)))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        ;; a raw control character
        (if (i32.lt_u (local.get $c) (i32.const 32)) (then (call $bad)))
        (br_if $end (i32.eq (local.get $c) (i32.const 34)))
        (if (i32.ne (local.get $c) (i32.const 92))
          (then
            (if (local.get $out)
              (then (i32.store8 (i32.add (local.get $out) (local.get $n)) (local.get $c))))
            (local.set $n (i32.add (local.get $n) (i32.const 1)))
            (br $next)))
        (local.set $c (call $byte_at (local.get $p)))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (if (i32.ne (local.get $c) (i32.const 117))
          (then
            (call $put (local.get $out) (local.get $n) (call $unescape (local.get $c)))
            (local.set $n (i32.add (local.get $n) (i32.const 1)))
            (br $next)))
        (local.set $cp (call $hex4 (local.get $p)))
        (local.set $p (i32.add (local.get $p) (i32.const 4)))
        (if (i32.eq (i32.and (local.get $cp) (i32.const 0xFC00)) (i32.const 0xDC00))
          (then (local.set $cp (i32.const 0xFFFD))))
        (if (i32.eq (i32.and (local.get $cp) (i32.const 0xFC00)) (i32.const 0xD800))
          (then
            (local.set $lo (i32.const 0))
            (if (i32.and
                  (i32.eq (call $byte_at (local.get $p)) (i32.const 92))
                  (i32.eq (call $byte_at (i32.add (local.get $p) (i32.const 1))) (i32.const 117)))
              (then (local.set $lo (call $hex4 (i32.add (local.get $p) (i32.const 2))))))
            (if (i32.eq (i32.and (local.get $lo) (i32.const 0xFC00)) (i32.const 0xDC00))
              (then
                (local.set $cp
                  (i32.add (i32.const 0x10000)
                    (i32.or
                      (i32.shl (i32.and (local.get $cp) (i32.const 0x3FF)) (i32.const 10))
                      (i32.and (local.get $lo) (i32.const 0x3FF)))))
                (local.set $p (i32.add (local.get $p) (i32.const 6))))
              (else (local.set $cp (i32.const 0xFFFD))))))
        (local.set $n (call $put_utf8 (local.get $out) (local.get $n) (local.get $cp)))
        (br $next)))
    (global.set $dlen (local.get $n))
    (local.get $p))

  ;; require the literal [lit, lit + len) at p
  (func $literal (param $p i32) (param $lit i32) (param $len i32) (result i32)
    (local $i i32)
    (loop $next
      (if (i32.ne (call $byte_at (i32.add (local.get $p) (local.get $i)))
                  (i32.load8_u (i32.add (local.get $lit) (local.get $i))))
        (then (call $bad)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $next (i32.lt_u (local.get $i) (local.get $len))))
    (i32.add (local.get $p) (local.get $len)))

  ;; one or more digits at p
  (func $digits (param $p i32) (result i32)
    (if (i32.eqz (call $is_digit (call $byte_at (local.get $p)))) (then (call $bad)))
    (loop $more
      (local.set $p (i32.add (local.get $p) (i32.const 1)))
      (br_if $more (call $is_digit (call $byte_at (local.get $p)))))
    (local.get $p))

  (func $skip_number (param $p i32) (result i32)
    (local $c i32)
    (if (i32.eq (call $byte_at (local.get $p)) (i32.const 45))
      (then (local.set $p (i32.add (local.get $p) (i32.const 1)))))
    (if (i32.eq (call $byte_at (local.get $p)) (i32.const 48))
      (then (local.set $p (i32.add (local.get $p) (i32.const 1))))
      (else (local.set $p (call $digits (local.get $p)))))
    (if (i32.eq (call $byte_at (local.get $p)) (i32.const 46))
      (then (local.set $p (call $digits (i32.add (local.get $p) (i32.const 1))))))
    (local.set $c (call $byte_at (local.get $p)))
    (if (i32.or (i32.eq (local.get $c) (i32.const 101)) (i32.eq (local.get $c) (i32.const 69)))
      (then
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (local.set $c (call $byte_at (local.get $p)))
        (if (i32.or (i32.eq (local.get $c) (i32.const 43)) (i32.eq (local.get $c) (i32.const 45)))
          (then (local.set $p (i32.add (local.get $p) (i32.const 1)))))
        (local.set $p (call $digits (local.get $p)))))
    (local.get $p))

  (func $enter
    (global.set $depth (i32.add (global.get $depth) (i32.const 1)))
    (if (i32.gt_u (global.get $depth) (i32.const 256))
      (then (call $die (i32.const 2) (i32.const 192) (i32.const 23)))))

  (func $skip_object (param $p i32) (result i32)
    (local $c i32)
    (call $enter)
    (local.set $p (call $skip_ws (i32.add (local.get $p) (i32.const 1))))
    (if (i32.ne (call $byte_at (local.get $p)) (i32.const 125))
      (then
        (loop $member
          (local.set $p (call $decode_string (call $skip_ws (local.get $p)) (i32.const 0)))
          (local.set $p (call $expect (call $skip_ws (local.get $p)) (i32.const 58)))
          (local.set $p (call $skip_ws (call $skip_value (local.get $p))))
          (local.set $c (call $byte_at (local.get $p)))
          (if (i32.eq (local.get $c) (i32.const 44))
            (then
              (local.set $p (i32.add (local.get $p) (i32.const 1)))
              (br $member)))
          (if (i32.ne (local.get $c) (i32.const 125)) (then (call $bad))))))
    (global.set $depth (i32.sub (global.get $depth) (i32.const 1)))
    (i32.add (local.get $p) (i32.const 1)))

  (func $skip_array (param $p i32) (result i32)
    (local $c i32)
    (call $enter)
    (local.set $p (call $skip_ws (i32.add (local.get $p) (i32.const 1))))
    (if (i32.ne (call $byte_at (local.get $p)) (i32.const 93))
      (then
        (loop $element
          (local.set $p (call $skip_ws (call $skip_value (local.get $p))))
          (local.set $c (call $byte_at (local.get $p)))
          (if (i32.eq (local.get $c) (i32.const 44))
            (then
              (local.set $p (i32.add (local.get $p) (i32.const 1)))
              (br $element)))
          (if (i32.ne (local.get $c) (i32.const 93)) (then (call $bad))))))
    (global.set $depth (i32.sub (global.get $depth) (i32.const 1)))
    (i32.add (local.get $p) (i32.const 1)))

  ;; validate the JSON value at p (after optional whitespace); returns the end
  (func $skip_value (param $p i32) (result i32)
    (local $c i32)
    (local.set $p (call $skip_ws (local.get $p)))
    (local.set $c (call $byte_at (local.get $p)))
    (if (i32.eq (local.get $c) (i32.const 34))
      (then (return (call $decode_string (local.get $p) (i32.const 0)))))
    (if (i32.eq (local.get $c) (i32.const 123))
      (then (return (call $skip_object (local.get $p)))))
    (if (i32.eq (local.get $c) (i32.const 91))
      (then (return (call $skip_array (local.get $p)))))
    (if (i32.eq (local.get $c) (i32.const 116))
      (then (return (call $literal (local.get $p) (i32.const 224) (i32.const 4)))))
    (if (i32.eq (local.get $c) (i32.const 102))
      (then (return (call $literal (local.get $p) (i32.const 228) (i32.const 5)))))
    (if (i32.eq (local.get $c) (i32.const 110))
      (then (return (call $literal (local.get $p) (i32.const 236) (i32.const 4)))))
    (call $skip_number (local.get $p)))

  (func $bytes_eq (param $a i32) (param $alen i32) (param $b i32) (param $blen i32) (result i32)
    (local $i i32)
    (if (i32.ne (local.get $alen) (local.get $blen)) (then (return (i32.const 0))))
    (block $differ
      (loop $next
        (br_if $differ (i32.ge_u (local.get $i) (local.get $alen)))
        (if (i32.ne (i32.load8_u (i32.add (local.get $a) (local.get $i)))
                    (i32.load8_u (i32.add (local.get $b) (local.get $i))))
          (then (return (i32.const 0))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.const 1))

  ;; Validate the whole input as one JSON object and return the position of
  ;; the value of member `key` (the last one if repeated), or -1.
  (func $find_key (param $key i32) (param $klen i32) (result i32)
    (local $p i32)
    (local $c i32)
    (local $found i32)
    (local $match i32)
    (local.set $found (i32.const -1))
    (local.set $p (call $expect (call $skip_ws (i32.const 65536)) (i32.const 123)))
    (local.set $p (call $skip_ws (local.get $p)))
    (if (i32.ne (call $byte_at (local.get $p)) (i32.const 125))
      (then
        (loop $member
          (local.set $p (call $decode_string (call $skip_ws (local.get $p)) (global.get $heap)))
          (local.set $match
            (call $bytes_eq (global.get $heap) (global.get $dlen) (local.get $key) (local.get $klen)))
          (local.set $p (call $skip_ws (call $expect (call $skip_ws (local.get $p)) (i32.const 58))))
          (if (local.get $match) (then (local.set $found (local.get $p))))
          (local.set $p (call $skip_ws (call $skip_value (local.get $p))))
          (local.set $c (call $byte_at (local.get $p)))
          (if (i32.eq (local.get $c) (i32.const 44))
            (then
              (local.set $p (i32.add (local.get $p) (i32.const 1)))
              (br $member)))
          (if (i32.ne (local.get $c) (i32.const 125)) (then (call $bad))))))
    (if (i32.ne (call $skip_ws (i32.add (local.get $p) (i32.const 1))) (global.get $in_end))
      (then (call $bad)))
    (local.get $found))

  ;; ---- output buffer -------------------------------------------------------

  (func $out_init (param $at i32)
    (global.set $out_start (i32.and (i32.add (local.get $at) (i32.const 7)) (i32.const -8)))
    (global.set $out (global.get $out_start)))

  (func $emit_byte (param $c i32)
    (call $ensure (i32.add (global.get $out) (i32.const 1)))
    (i32.store8 (global.get $out) (local.get $c))
    (global.set $out (i32.add (global.get $out) (i32.const 1))))

  (func $emit (param $ptr i32) (param $len i32)
    (call $ensure (i32.add (global.get $out) (local.get $len)))
    (memory.copy (global.get $out) (local.get $ptr) (local.get $len))
    (global.set $out (i32.add (global.get $out) (local.get $len))))

  ;; signed decimal
  (func $emit_i64 (param $n i64)
    (local $p i32)
    (local $u i64)
    (local.set $u (local.get $n))
    (if (i64.lt_s (local.get $n) (i64.const 0))
      (then
        (call $emit_byte (i32.const 45))
        (local.set $u (i64.sub (i64.const 0) (local.get $n)))))
    (local.set $p (i32.const 128))
    (loop $digit
      (local.set $p (i32.sub (local.get $p) (i32.const 1)))
      (i32.store8 (local.get $p)
        (i32.add (i32.const 48) (i32.wrap_i64 (i64.rem_u (local.get $u) (i64.const 10)))))
      (local.set $u (i64.div_u (local.get $u) (i64.const 10)))
      (br_if $digit (i64.ne (local.get $u) (i64.const 0))))
    (call $emit (local.get $p) (i32.sub (i32.const 128) (local.get $p))))

  ;; write the output buffer to stdout
  (func $flush
    (local $p i32)
    (local $n i32)
    (local.set $p (global.get $out_start))
    (block $done
      (loop $more
        (br_if $done (i32.ge_u (local.get $p) (global.get $out)))
        (i32.store (i32.const 0) (local.get $p))
        (i32.store (i32.const 4) (i32.sub (global.get $out) (local.get $p)))
        (if (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))
          (then (call $die (i32.const 4) (i32.const 176) (i32.const 10))))
        (local.set $n (i32.load (i32.const 8)))
        (if (i32.eqz (local.get $n)) (then (call $die (i32.const 4) (i32.const 176) (i32.const 10))))
        (local.set $p (i32.add (local.get $p) (local.get $n)))
        (br $more))))
  ;; ---- end of shared runtime -----------------------------------------------

  ;; ---- wordcount -----------------------------------------------------------
  (data (i32.const 256) "text")
  (data (i32.const 264) "missing string member \"text\"\n")  ;; 29
  (data (i32.const 320) "{\"bytes\":")                       ;; 9
  (data (i32.const 336) ",\"chars\":")                       ;; 9
  (data (i32.const 352) ",\"lines\":")                       ;; 9
  (data (i32.const 368) ",\"words\":")                       ;; 9

  (func (export "_start")
    (local $v i32)
    (local $s i32)
    (local $len i32)
    (local $i i32)
    (local $c i32)
    (local $chars i32)
    (local $lines i32)
    (local $words i32)
    (local $in_word i32)
    (call $read_input)
    (local.set $v (call $find_key (i32.const 256) (i32.const 4)))
    (if (i32.or (i32.lt_s (local.get $v) (i32.const 0))
                (i32.ne (call $byte_at (local.get $v)) (i32.const 34)))
      (then (call $die (i32.const 2) (i32.const 264) (i32.const 29))))
    (local.set $s (global.get $heap))
    (drop (call $decode_string (local.get $v) (local.get $s)))
    (local.set $len (global.get $dlen))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $len)))
        (local.set $c (i32.load8_u (i32.add (local.get $s) (local.get $i))))
        (if (i32.ne (i32.and (local.get $c) (i32.const 0xC0)) (i32.const 0x80))
          (then (local.set $chars (i32.add (local.get $chars) (i32.const 1)))))
        (if (i32.eq (local.get $c) (i32.const 10))
          (then (local.set $lines (i32.add (local.get $lines) (i32.const 1)))))
        (if (i32.or (i32.eq (local.get $c) (i32.const 32))
                    (i32.lt_u (i32.sub (local.get $c) (i32.const 9)) (i32.const 5)))
          (then (local.set $in_word (i32.const 0)))
          (else
            (if (i32.eqz (local.get $in_word))
              (then
                (local.set $words (i32.add (local.get $words) (i32.const 1)))
                (local.set $in_word (i32.const 1))))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (call $out_init (i32.add (local.get $s) (local.get $len)))
    (call $emit (i32.const 320) (i32.const 9))
    (call $emit_i64 (i64.extend_i32_u (local.get $len)))
    (call $emit (i32.const 336) (i32.const 9))
    (call $emit_i64 (i64.extend_i32_u (local.get $chars)))
    (call $emit (i32.const 352) (i32.const 9))
    (call $emit_i64 (i64.extend_i32_u (local.get $lines)))
    (call $emit (i32.const 368) (i32.const 9))
    (call $emit_i64 (i64.extend_i32_u (local.get $words)))
    (call $emit_byte (i32.const 125))
    (call $emit_byte (i32.const 10))
    (call $flush)))
