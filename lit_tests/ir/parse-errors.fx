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

# -----
# Declared types are checked against what the op gives for its operands' declared types.
# CHECK: parse-errors.fx:[[# @LINE + 2]]:16: error: %y is declared f32[8], but aten.add.Tensor gives f32[4]
graph @shape_mismatch(%a: f32[4], %b: f32[4]) {
  %y: f32[8] = aten.add.Tensor(%a, %b)
  return (%y,)
}

# -----
# CHECK: parse-errors.fx:[[# @LINE + 2]]:16: error: %y is declared i64[4], but aten.add.Tensor gives f32[4]
graph @dtype_mismatch(%a: f32[4], %b: f32[4]) {
  %y: i64[4] = aten.add.Tensor(%a, %b)
  return (%y,)
}

# -----
# CHECK: parse-errors.fx:[[# @LINE + 2]]:22: error: %v is declared f32[2*s0, 8], but aten.view.default gives f32[s0, 2, 4]
graph @rank_mismatch(%x: f32[s0, 8]) {
  %v: f32[2*s0, 8] = aten.view.default(%x, [-1, 2, 4])
  return (%v,)
}

# -----
# CHECK: parse-errors.fx:[[# @LINE + 2]]:20: error: %y is declared f32[s1, 4], but aten.mul.Tensor gives f32[s0, 4]
graph @symbol_mismatch(%x: f32[s0, 4], %z: f32[s1, 4]) {
  %y: f32[s1, 4] = aten.mul.Tensor(%x, %x)
  return (%y,)
}

# -----
# CHECK: parse-errors.fx:[[# @LINE + 3]]:16: error: %m is declared f32[4], but getitem gives f32[8]
graph @tuple_item_mismatch(%x: f32[4, 8]) {
  %vm: (f32[8], f32[8]) = aten.var_mean.correction(%x, [0], correction=0)
  %m: f32[4] = getitem(%vm, 1)
  return (%m,)
}

# -----
# CHECK: parse-errors.fx:[[# @LINE + 2]]:27: error: %vm is declared (f32[8], f32[4]), but aten.var_mean.correction gives (f32[8], f32[8])
graph @tuple_mismatch(%x: f32[4, 8]) {
  %vm: (f32[8], f32[4]) = aten.var_mean.correction(%x, [0], correction=0)
  %m: f32[4] = getitem(%vm, 1)
  return (%m,)
}

# -----
# CHECK: parse-errors.fx:[[# @LINE + 2]]:46: error: expected a module path after scope = (a string, e.g. "layers.0.attn"), found 'layers.0}'
graph @scope_not_a_string(%x: f32[4]) {
  %a: f32[4] = aten.neg.default(%x) {scope = layers.0}
  return (%a,)
}

# -----
# CHECK: parse-errors.fx:[[# @LINE + 2]]:59: error: expected a module class name after ':' in a scope (a string, e.g. "Linear"), found '3}'
graph @scope_class_not_a_string(%x: f32[4]) {
  %a: f32[4] = aten.neg.default(%x) {scope = "layers.0" : 3}
  return (%a,)
}

# -----
# CHECK: parse-errors.fx:[[# @LINE + 2]]:38: error: unknown attribute 'module' (valid: kernel, kind, scope)
graph @unknown_attribute(%x: f32[4]) {
  %a: f32[4] = aten.neg.default(%x) {module = "Linear"}
  return (%a,)
}

# -----
# CHECK: parse-errors.fx:[[# @LINE + 2]]:50: error: attribute 'scope' is given twice
graph @attribute_twice(%x: f32[4]) {
  %a: f32[4] = aten.neg.default(%x) {scope = "a", scope = "b"}
  return (%a,)
}
