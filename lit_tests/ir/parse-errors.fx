# RUN: not %fastc-opt --split-input-file %s 2>&1 | filecheck %s

# CHECK: parse-errors.fx:[[# @LINE + 2]]:25: error: use of undefined value %y
graph @undefined(%x: f32[4]) {
  %a: f32[4] = aten.neg(%y)
  return (%a,)
}

# -----
# CHECK: parse-errors.fx:[[# @LINE + 2]]:16: error: unknown op 'aten.no_such_op.default'
graph @bad_op(%x: f32[4]) {
  %a: f32[4] = aten.no_such_op.default(%x)
  return (%a,)
}

# -----
# CHECK: parse-errors.fx:[[# @LINE + 2]]:35: error: expected ',' or ')' after an argument, found '%x)'
graph @missing_comma(%x: f32[4]) {
  %a: f32[4] = aten.add.Tensor(%x %x)
  return (%a,)
}

# -----
# CHECK: parse-errors.fx:[[# @LINE + 1]]:33: error: unknown element type 'f33' (valid: f32, f16, bf16,
graph @bad_type(%x: f32[4], %y: f33[4]) {
  return (%x,)
}

# -----
# CHECK: parse-errors.fx:[[# @LINE + 3]]:4: error: value %a is defined twice
graph @twice(%x: f32[4]) {
  %a: f32[4] = aten.neg.default(%x)
  %a: f32[4] = aten.neg.default(%x)
  return (%a,)
}

# -----
# CHECK: parse-errors.fx:[[# @LINE + 2]]:22: error: dense literal has 3 elements, its type f32[2] needs 2
graph @dense_size(%x: f32[2]) {
  %c: f32[2] = const dense<[1.0, 2.0, 3.0]>
  return (%c,)
}

# -----
# CHECK: parse-errors.fx:[[# @LINE + 2]]:22: error: constant @w is not among the 0 given constants
graph @missing_constant(%x: f32[2]) {
  %c: f32[2] = const @w
  return (%c,)
}
