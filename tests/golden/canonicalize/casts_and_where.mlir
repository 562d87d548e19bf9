// RUN: canonicalize
// f16 -> f32 -> f16 is exact and disappears; f16 -> i32 -> f16 truncates and stays. A where
// with an all-true constant condition is its first branch, and one with equal branches is
// that branch.
// CHECK-NOT: dtype = f32
// CHECK: %int = "sc.cast"(%x) {dtype = i32}
// CHECK-NEXT: %trunc = "sc.cast"(%int) {dtype = f16}
// CHECK-NOT: "sc.where"
// CHECK-NEXT: "func.return"(%trunc)
"builtin.module"() ({
  "func.func"() <{arg_attrs = [{sc.dims = ["tokens", 8 : i64], sc.name = "x"}, {sc.dims = ["tokens", 8 : i64], sc.name = "c"}], function_type = (tensor<?x8xf16>, tensor<?x8xi1>) -> tensor<?x8xf16>, sym_name = "main"}> ({
  ^bb0(%x: tensor<?x8xf16>, %c: tensor<?x8xi1>):
    %wide = "sc.cast"(%x) {dtype = f32} : (tensor<?x8xf16>) -> tensor<?x8xf32>
    %back = "sc.cast"(%wide) {dtype = f16} : (tensor<?x8xf32>) -> tensor<?x8xf16>
    %int = "sc.cast"(%back) {dtype = i32} : (tensor<?x8xf16>) -> tensor<?x8xi32>
    %trunc = "sc.cast"(%int) {dtype = f16} : (tensor<?x8xi32>) -> tensor<?x8xf16>
    %true = "sc.constant"() {value = dense<true> : tensor<i1>} : () -> tensor<i1>
    %w = "sc.where"(%true, %trunc, %x) : (tensor<i1>, tensor<?x8xf16>, tensor<?x8xf16>) -> tensor<?x8xf16>
    %same = "sc.where"(%c, %w, %w) : (tensor<?x8xi1>, tensor<?x8xf16>, tensor<?x8xf16>) -> tensor<?x8xf16>
    "func.return"(%same) : (tensor<?x8xf16>) -> ()
  }) : () -> ()
}) : () -> ()
