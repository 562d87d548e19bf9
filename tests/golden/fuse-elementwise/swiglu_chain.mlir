// RUN: fuse-elementwise
// silu(a) * b + c is one group: one sc.fused whose block arguments are the three inputs (c
// broadcasts to the iteration space [tokens, 8]) and which yields the sum.
// CHECK: %0 = "sc.fused"(%a, %b, %c) ({
// CHECK-NEXT: ^bb0(%arg0: tensor<?x8xf32>, %arg1: tensor<?x8xf32>, %arg2: tensor<8xf32>):
// CHECK-NEXT: %1 = "sc.silu"(%arg0)
// CHECK-NEXT: %2 = "sc.mul"(%1, %arg1)
// CHECK-NEXT: %3 = "sc.add"(%2, %arg2)
// CHECK-NEXT: "sc.yield"(%3) : (tensor<?x8xf32>) -> ()
// CHECK-NEXT: }) {kind = "elementwise"} : (tensor<?x8xf32>, tensor<?x8xf32>, tensor<8xf32>) -> tensor<?x8xf32>
// CHECK-NEXT: "func.return"(%0)
"builtin.module"() ({
  "func.func"() <{arg_attrs = [{sc.dims = ["tokens", 8 : i64], sc.name = "a"}, {sc.dims = ["tokens", 8 : i64], sc.name = "b"}, {sc.name = "c"}], function_type = (tensor<?x8xf32>, tensor<?x8xf32>, tensor<8xf32>) -> tensor<?x8xf32>, sym_name = "main"}> ({
  ^bb0(%a: tensor<?x8xf32>, %b: tensor<?x8xf32>, %c: tensor<8xf32>):
    %0 = "sc.silu"(%a) : (tensor<?x8xf32>) -> tensor<?x8xf32>
    %1 = "sc.mul"(%0, %b) : (tensor<?x8xf32>, tensor<?x8xf32>) -> tensor<?x8xf32>
    %2 = "sc.add"(%1, %c) : (tensor<?x8xf32>, tensor<8xf32>) -> tensor<?x8xf32>
    "func.return"(%2) : (tensor<?x8xf32>) -> ()
  }) : () -> ()
}) : () -> ()
