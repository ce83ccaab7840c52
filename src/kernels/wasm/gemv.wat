;; WebAssembly SIMD kernels over packed weights (docs/quantization.md), for the CPU backends.
;;
;; Assembled by scripts/build-wasm.mjs (wabt) into gemv.wasm.ts, which is committed; the test
;; test/quant.test.ts re-assembles this file and checks the committed bytes are identical.
;; The JavaScript side (gemv.ts) writes the input into the module's memory, calls a kernel on
;; the weights — in place when they were allocated in that memory (an arena), else a block of
;; rows copied in — and reads the outputs back.
;;
;; A linear weight W is [rows = N, cols = K] row-major; every kernel computes one output row
;; y[n] = sum_k dequant(W[n, k]) * x[k] for a block of rows n, reading each weight once: bf16 in
;; float32 lanes; q8 and q4 as integer dot products of the codes with x in fixed point, exact
;; within each group, each group's sum scaled once in float32 (see the quantised kernels below).
;; No FMA anywhere: the result is sum_k dequant(W[n, k]) * x[k] up to float32 rounding (and
;; for q8 / q4 the rounding of x to 30-bit fixed point, 2^-30 of max|x| per element).

(module
  ;; The memory is the caller's: a growable scratch memory, or a fixed-size arena that holds
  ;; packed weights (read in place, no copy) and a scratch region at its start.
  (import "env" "mem" (memory 1))

  ;; ---------------------------------------------------------------------------------------
  ;; bf16(src, dst, n): float32 dst[i] = bf16 src[i], n a multiple of 8. A bf16 is the upper
  ;; half of a float32: widen each 16-bit lane to 32 bits and shift it left by 16.
  (func (export "bf16") (param $src i32) (param $dst i32) (param $n i32)
    (local $end i32)
    (local.set $end (i32.add (local.get $src) (i32.shl (local.get $n) (i32.const 1))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $src) (local.get $end)))
        (v128.store (local.get $dst)
          (i32x4.shl (i32x4.extend_low_i16x8_u (v128.load (local.get $src))) (i32.const 16)))
        (v128.store offset=16 (local.get $dst)
          (i32x4.shl (i32x4.extend_high_i16x8_u (v128.load (local.get $src))) (i32.const 16)))
        (local.set $src (i32.add (local.get $src) (i32.const 16)))
        (local.set $dst (i32.add (local.get $dst) (i32.const 32)))
        (br $next))))

  ;; The four lanes of a float32x4 summed: (l0 + l1) + l2 + l3.
  (func $hsum (param $v v128) (result f32)
    (f32.add
      (f32.add
        (f32.add (f32x4.extract_lane 0 (local.get $v)) (f32x4.extract_lane 1 (local.get $v)))
        (f32x4.extract_lane 2 (local.get $v)))
      (f32x4.extract_lane 3 (local.get $v))))

  ;; ---------------------------------------------------------------------------------------
  ;; gemv_bf16(w, x, y, rows, cols): y[r] = sum_c bf16 w[r, c] * x[c], cols a multiple of 8.
  ;; Eight weights per step (one 16-byte load), two accumulators.
  (func (export "gemv_bf16") (param $w i32) (param $x i32) (param $y i32) (param $rows i32) (param $cols i32)
    (local $r i32) (local $c i32) (local $wp i32)
    (local $acc0 v128) (local $acc1 v128) (local $v v128)
    (local.set $wp (local.get $w))
    (local.set $r (i32.const 0))
    (block $rows_done
      (loop $row
        (br_if $rows_done (i32.ge_u (local.get $r) (local.get $rows)))
        (local.set $acc0 (v128.const i32x4 0 0 0 0))
        (local.set $acc1 (v128.const i32x4 0 0 0 0))
        (local.set $c (i32.const 0))
        (block $cols_done
          (loop $col
            (br_if $cols_done (i32.ge_u (local.get $c) (local.get $cols)))
            (local.set $v (v128.load (local.get $wp)))
            (local.set $acc0
              (f32x4.add (local.get $acc0)
                (f32x4.mul
                  (i32x4.shl (i32x4.extend_low_i16x8_u (local.get $v)) (i32.const 16))
                  (v128.load (i32.add (local.get $x) (i32.shl (local.get $c) (i32.const 2)))))))
            (local.set $acc1
              (f32x4.add (local.get $acc1)
                (f32x4.mul
                  (i32x4.shl (i32x4.extend_high_i16x8_u (local.get $v)) (i32.const 16))
                  (v128.load offset=16 (i32.add (local.get $x) (i32.shl (local.get $c) (i32.const 2)))))))
            (local.set $wp (i32.add (local.get $wp) (i32.const 16)))
            (local.set $c (i32.add (local.get $c) (i32.const 8)))
            (br $col)))
        (f32.store
          (i32.add (local.get $y) (i32.shl (local.get $r) (i32.const 2)))
          (call $hsum (f32x4.add (local.get $acc0) (local.get $acc1))))
        (local.set $r (i32.add (local.get $r) (i32.const 1)))
        (br $row))))

  ;; ---------------------------------------------------------------------------------------
  ;; The quantised kernels multiply integer codes by the input held in fixed point: the caller
  ;; scales x by 2^29 / max|x| and rounds it to an integer X (|X| <= 2^29, 30 bits: the rounding
  ;; is 2^-30 of max|x| per element), split as X = hi * 2^15 + lo with hi in [-2^14, 2^14] and lo
  ;; in [0, 2^15) (both int16). i32x4.dot_i16x8_s then multiplies eight 16-bit codes by eight
  ;; 16-bit halves of X and sums pairs, exactly: over a group of G <= 64 codes the int32 sums
  ;;   H = sum q * hi (|H| <= 64 * 127 * 2^14 < 2^31),  L = sum q * lo (< 64 * 127 * 2^15 < 2^31)
  ;; are exact, and sum_{k in g} q[n, k] * x[k] = (H * 2^15 + L) * xs with xs = max|x| / 2^29.
  ;; Each group's value is converted to float32 once and scaled:
  ;;
  ;;   q8:  y[n] = xs * sum_g scale[n, g] * (H_g * 2^15 + L_g)
  ;;   q4:  y[n] = xs * sum_g scale[n, g] * (H_g * 2^15 + L_g)  +  sum_g min[n, g] * xg[g]
  ;;        with xg[g] = sum_{k in g} x[k] (computed once per input by the caller)
  ;;
  ;; Per code that is a third of the work of widening codes to float32 lanes (no conversions, a
  ;; multiply-add of 8 codes in one instruction), and more accurate than float32 accumulation
  ;; (the sums inside a group are exact). Two output rows per pass share the x loads; for an odd
  ;; row count the last pass computes the last row twice.

  ;; ---------------------------------------------------------------------------------------
  ;; gemv_q8(w, s, x, y, rows, cols, gs, xs): q8 weights, int8 codes (4 per int32 word,
  ;; row-major [rows, cols / 4]), scales float32 [rows, cols / gs], gs in {8, 16, 32, 64}.
  ;; x: per 8 inputs, their 8 hi halves then their 8 lo halves (int16, 32 bytes).
  ;; Eight codes per step: i16x8.load8x8_s sign-extends 8 bytes to 16-bit lanes.
  (func (export "gemv_q8")
    (param $w i32) (param $s i32) (param $x i32) (param $y i32) (param $rows i32) (param $cols i32) (param $gs i32)
    (param $xs f32)
    (local $r i32) (local $k i32) (local $gend i32) (local $xp i32)
    (local $wp0 i32) (local $wp1 i32) (local $sp0 i32) (local $sp1 i32) (local $y1 i32)
    (local $h0 v128) (local $l0 v128) (local $h1 v128) (local $l1 v128)
    (local $acc0 v128) (local $acc1 v128) (local $v v128) (local $xh v128) (local $xl v128)
    (local.set $r (i32.const 0))
    (block $rows_done
      (loop $row
        (br_if $rows_done (i32.ge_u (local.get $r) (local.get $rows)))
        ;; Row r and row r + 1 (row r again when r is the last row).
        (local.set $wp0 (i32.add (local.get $w) (i32.mul (local.get $r) (local.get $cols))))
        (local.set $sp0 (i32.add (local.get $s)
          (i32.shl (i32.mul (local.get $r) (i32.div_u (local.get $cols) (local.get $gs))) (i32.const 2))))
        (local.set $y1 (i32.add (local.get $y) (i32.shl (local.get $r) (i32.const 2))))
        (if (i32.lt_u (i32.add (local.get $r) (i32.const 1)) (local.get $rows))
          (then
            (local.set $wp1 (i32.add (local.get $wp0) (local.get $cols)))
            (local.set $sp1 (i32.add (local.get $sp0) (i32.shl (i32.div_u (local.get $cols) (local.get $gs)) (i32.const 2))))
            (local.set $y1 (i32.add (local.get $y1) (i32.const 4))))
          (else
            (local.set $wp1 (local.get $wp0))
            (local.set $sp1 (local.get $sp0))))
        (local.set $acc0 (v128.const i32x4 0 0 0 0))
        (local.set $acc1 (v128.const i32x4 0 0 0 0))
        (local.set $xp (local.get $x))
        (local.set $k (i32.const 0))
        (block $groups_done
          (loop $group
            (br_if $groups_done (i32.ge_u (local.get $k) (local.get $cols)))
            (local.set $gend (i32.add (local.get $k) (local.get $gs)))
            (local.set $h0 (v128.const i32x4 0 0 0 0))
            (local.set $l0 (v128.const i32x4 0 0 0 0))
            (local.set $h1 (v128.const i32x4 0 0 0 0))
            (local.set $l1 (v128.const i32x4 0 0 0 0))
            (block $steps_done
              (loop $step
                (br_if $steps_done (i32.ge_u (local.get $k) (local.get $gend)))
                (local.set $xh (v128.load (local.get $xp)))
                (local.set $xl (v128.load offset=16 (local.get $xp)))
                (local.set $v (v128.load8x8_s (local.get $wp0)))
                (local.set $h0 (i32x4.add (local.get $h0) (i32x4.dot_i16x8_s (local.get $v) (local.get $xh))))
                (local.set $l0 (i32x4.add (local.get $l0) (i32x4.dot_i16x8_s (local.get $v) (local.get $xl))))
                (local.set $v (v128.load8x8_s (local.get $wp1)))
                (local.set $h1 (i32x4.add (local.get $h1) (i32x4.dot_i16x8_s (local.get $v) (local.get $xh))))
                (local.set $l1 (i32x4.add (local.get $l1) (i32x4.dot_i16x8_s (local.get $v) (local.get $xl))))
                (local.set $wp0 (i32.add (local.get $wp0) (i32.const 8)))
                (local.set $wp1 (i32.add (local.get $wp1) (i32.const 8)))
                (local.set $xp (i32.add (local.get $xp) (i32.const 32)))
                (local.set $k (i32.add (local.get $k) (i32.const 8)))
                (br $step)))
            ;; The group's exact sums to float32 (H * 2^15 + L), scaled once.
            (local.set $acc0 (f32x4.add (local.get $acc0)
              (f32x4.mul (call $fixed (local.get $h0) (local.get $l0)) (f32x4.splat (f32.load (local.get $sp0))))))
            (local.set $acc1 (f32x4.add (local.get $acc1)
              (f32x4.mul (call $fixed (local.get $h1) (local.get $l1)) (f32x4.splat (f32.load (local.get $sp1))))))
            (local.set $sp0 (i32.add (local.get $sp0) (i32.const 4)))
            (local.set $sp1 (i32.add (local.get $sp1) (i32.const 4)))
            (br $group)))
        ;; Row r + 1 first: for the last row of an odd count both addresses are y[r].
        (f32.store (local.get $y1) (f32.mul (call $hsum (local.get $acc1)) (local.get $xs)))
        (f32.store (i32.add (local.get $y) (i32.shl (local.get $r) (i32.const 2)))
          (f32.mul (call $hsum (local.get $acc0)) (local.get $xs)))
        (local.set $r (i32.add (local.get $r) (i32.const 2)))
        (br $row))))

  ;; H * 2^15 + L in float32 lanes, from the int32 lanes of H and L.
  (func $fixed (param $h v128) (param $l v128) (result v128)
    (f32x4.add
      (f32x4.mul (f32x4.convert_i32x4_s (local.get $h)) (v128.const f32x4 32768 32768 32768 32768))
      (f32x4.convert_i32x4_s (local.get $l))))

  ;; ---------------------------------------------------------------------------------------
  ;; gemv_q4(w, s, m, x, xg, y, rows, cols, gs, xs): q4 weights, 4-bit codes (8 per int32 word,
  ;; row-major [rows, cols / 8]), scales and mins float32 [rows, cols / gs].
  ;;
  ;; Sixteen codes per step: i16x8.load8x8_u reads 8 bytes (two words) into 16-bit lanes; byte j
  ;; holds code 2j in its low nibble and code 2j + 1 in its high one, so (v & 15) are the even
  ;; codes and (v >> 4) the odd ones. x must be given to match, per 16 inputs (64 bytes):
  ;;   hi of x[0] x[2] .. x[14] | hi of x[1] x[3] .. x[15] | lo of x[0] x[2] .. | lo of x[1] x[3] ..
  ;; cols must be a multiple of 16, so gs is 16, 32 or 64 and every step lies in one group.
  ;; xg: float32 [cols / gs], the sum of x over each group (for the mins).
  (func (export "gemv_q4")
    (param $w i32) (param $s i32) (param $m i32) (param $x i32) (param $xg i32) (param $y i32)
    (param $rows i32) (param $cols i32) (param $gs i32) (param $xs f32)
    (local $r i32) (local $k i32) (local $gend i32) (local $xp i32)
    (local $ng i32) (local $g i32) (local $rowbytes i32) (local $sbytes i32) (local $y1 i32)
    (local $wp0 i32) (local $wp1 i32) (local $sp0 i32) (local $sp1 i32) (local $mp0 i32) (local $mp1 i32)
    (local $t0 f32) (local $t1 f32) (local $xgv f32)
    (local $h0 v128) (local $l0 v128) (local $h1 v128) (local $l1 v128)
    (local $acc0 v128) (local $acc1 v128) (local $v v128) (local $lo v128) (local $hi v128)
    (local $xhe v128) (local $xho v128) (local $xle v128) (local $xlo v128)
    (local.set $rowbytes (i32.shr_u (local.get $cols) (i32.const 1)))
    (local.set $ng (i32.div_u (local.get $cols) (local.get $gs)))
    (local.set $sbytes (i32.shl (local.get $ng) (i32.const 2)))
    (local.set $r (i32.const 0))
    (block $rows_done
      (loop $row
        (br_if $rows_done (i32.ge_u (local.get $r) (local.get $rows)))
        (local.set $wp0 (i32.add (local.get $w) (i32.mul (local.get $r) (local.get $rowbytes))))
        (local.set $sp0 (i32.add (local.get $s) (i32.mul (local.get $r) (local.get $sbytes))))
        (local.set $mp0 (i32.add (local.get $m) (i32.mul (local.get $r) (local.get $sbytes))))
        (local.set $y1 (i32.add (local.get $y) (i32.shl (local.get $r) (i32.const 2))))
        (if (i32.lt_u (i32.add (local.get $r) (i32.const 1)) (local.get $rows))
          (then
            (local.set $wp1 (i32.add (local.get $wp0) (local.get $rowbytes)))
            (local.set $sp1 (i32.add (local.get $sp0) (local.get $sbytes)))
            (local.set $mp1 (i32.add (local.get $mp0) (local.get $sbytes)))
            (local.set $y1 (i32.add (local.get $y1) (i32.const 4))))
          (else
            (local.set $wp1 (local.get $wp0))
            (local.set $sp1 (local.get $sp0))
            (local.set $mp1 (local.get $mp0))))
        (local.set $acc0 (v128.const i32x4 0 0 0 0))
        (local.set $acc1 (v128.const i32x4 0 0 0 0))
        (local.set $xp (local.get $x))
        (local.set $k (i32.const 0))
        (block $groups_done
          (loop $group
            (br_if $groups_done (i32.ge_u (local.get $k) (local.get $cols)))
            (local.set $gend (i32.add (local.get $k) (local.get $gs)))
            (local.set $h0 (v128.const i32x4 0 0 0 0))
            (local.set $l0 (v128.const i32x4 0 0 0 0))
            (local.set $h1 (v128.const i32x4 0 0 0 0))
            (local.set $l1 (v128.const i32x4 0 0 0 0))
            (block $steps_done
              (loop $step
                (br_if $steps_done (i32.ge_u (local.get $k) (local.get $gend)))
                (local.set $xhe (v128.load (local.get $xp)))
                (local.set $xho (v128.load offset=16 (local.get $xp)))
                (local.set $xle (v128.load offset=32 (local.get $xp)))
                (local.set $xlo (v128.load offset=48 (local.get $xp)))
                ;; Row r.
                (local.set $v (v128.load8x8_u (local.get $wp0)))
                (local.set $lo (v128.and (local.get $v) (v128.const i16x8 15 15 15 15 15 15 15 15)))
                (local.set $hi (i16x8.shr_u (local.get $v) (i32.const 4)))
                (local.set $h0 (i32x4.add (local.get $h0)
                  (i32x4.add (i32x4.dot_i16x8_s (local.get $lo) (local.get $xhe)) (i32x4.dot_i16x8_s (local.get $hi) (local.get $xho)))))
                (local.set $l0 (i32x4.add (local.get $l0)
                  (i32x4.add (i32x4.dot_i16x8_s (local.get $lo) (local.get $xle)) (i32x4.dot_i16x8_s (local.get $hi) (local.get $xlo)))))
                ;; Row r + 1.
                (local.set $v (v128.load8x8_u (local.get $wp1)))
                (local.set $lo (v128.and (local.get $v) (v128.const i16x8 15 15 15 15 15 15 15 15)))
                (local.set $hi (i16x8.shr_u (local.get $v) (i32.const 4)))
                (local.set $h1 (i32x4.add (local.get $h1)
                  (i32x4.add (i32x4.dot_i16x8_s (local.get $lo) (local.get $xhe)) (i32x4.dot_i16x8_s (local.get $hi) (local.get $xho)))))
                (local.set $l1 (i32x4.add (local.get $l1)
                  (i32x4.add (i32x4.dot_i16x8_s (local.get $lo) (local.get $xle)) (i32x4.dot_i16x8_s (local.get $hi) (local.get $xlo)))))
                (local.set $wp0 (i32.add (local.get $wp0) (i32.const 8)))
                (local.set $wp1 (i32.add (local.get $wp1) (i32.const 8)))
                (local.set $xp (i32.add (local.get $xp) (i32.const 64)))
                (local.set $k (i32.add (local.get $k) (i32.const 16)))
                (br $step)))
            ;; The group's exact sums to float32, scaled once.
            (local.set $acc0 (f32x4.add (local.get $acc0)
              (f32x4.mul (call $fixed (local.get $h0) (local.get $l0)) (f32x4.splat (f32.load (local.get $sp0))))))
            (local.set $acc1 (f32x4.add (local.get $acc1)
              (f32x4.mul (call $fixed (local.get $h1) (local.get $l1)) (f32x4.splat (f32.load (local.get $sp1))))))
            (local.set $sp0 (i32.add (local.get $sp0) (i32.const 4)))
            (local.set $sp1 (i32.add (local.get $sp1) (i32.const 4)))
            (br $group)))
        ;; The mins: sum_g min[n, g] * xg[g].
        (local.set $t0 (f32.const 0))
        (local.set $t1 (f32.const 0))
        (local.set $g (i32.const 0))
        (block $mins_done
          (loop $min
            (br_if $mins_done (i32.ge_u (local.get $g) (local.get $sbytes)))
            (local.set $xgv (f32.load (i32.add (local.get $xg) (local.get $g))))
            (local.set $t0 (f32.add (local.get $t0) (f32.mul (f32.load (i32.add (local.get $mp0) (local.get $g))) (local.get $xgv))))
            (local.set $t1 (f32.add (local.get $t1) (f32.mul (f32.load (i32.add (local.get $mp1) (local.get $g))) (local.get $xgv))))
            (local.set $g (i32.add (local.get $g) (i32.const 4)))
            (br $min)))
        (f32.store (local.get $y1)
          (f32.add (f32.mul (call $hsum (local.get $acc1)) (local.get $xs)) (local.get $t1)))
        (f32.store (i32.add (local.get $y) (i32.shl (local.get $r) (i32.const 2)))
          (f32.add (f32.mul (call $hsum (local.get $acc0)) (local.get $xs)) (local.get $t0)))
        (local.set $r (i32.add (local.get $r) (i32.const 2)))
        (br $row))))
)
