// RUN: canonicalize
// Two transposes compose into one (perm [1, 0, 2] then [0, 2, 1] is [1, 2, 0]); a reshape of a
// reshape reshapes %x directly; a slice over the whole axis and expand_dims/squeeze of the same
// axis leave %x itself.
// CHECK: "sc.transpose"(%x) {perm = array<i64: 1, 2, 0>} : (tensor<?x3x4xf32>) -> tensor<3x4x?xf32>
// CHECK-NEXT: "sc.reshape"(%x) {shape = [-1 : i64]} : (tensor<?x3x4xf32>) -> tensor<?xf32>
// CHECK-NEXT: "func.return"(%0, %1, %x)
"builtin.module"() ({
  "func.func"() <{arg_attrs = [{sc.dims = ["batch", 3 : i64, 4 : i64], sc.name = "x"}], function_type = (tensor<?x3x4xf32>) -> (tensor<3x4x?xf32>, tensor<?xf32>, tensor<?x3x4xf32>), sym_name = "main"}> ({
  ^bb0(%x: tensor<?x3x4xf32>):
    %t0 = "sc.transpose"(%x) {perm = array<i64: 1, 0, 2>} : (tensor<?x3x4xf32>) -> tensor<3x?x4xf32>
    %t1 = "sc.transpose"(%t0) {perm = array<i64: 0, 2, 1>} : (tensor<3x?x4xf32>) -> tensor<3x4x?xf32>
    %r0 = "sc.reshape"(%x) {shape = [-1 : i64, 4 : i64]} : (tensor<?x3x4xf32>) -> tensor<?x4xf32>
    %r1 = "sc.reshape"(%r0) {shape = [-1 : i64]} : (tensor<?x4xf32>) -> tensor<?xf32>
    %s = "sc.slice"(%x) {axis = 2 : i64, start = 0 : i64, step = 1 : i64, stop = 4 : i64} : (tensor<?x3x4xf32>) -> tensor<?x3x4xf32>
    %e = "sc.expand_dims"(%s) {axes = array<i64: 1>} : (tensor<?x3x4xf32>) -> tensor<?x1x3x4xf32>
    %q = "sc.squeeze"(%e) {axes = array<i64: 1>} : (tensor<?x1x3x4xf32>) -> tensor<?x3x4xf32>
    "func.return"(%t1, %r1, %q) : (tensor<3x4x?xf32>, tensor<?xf32>, tensor<?x3x4xf32>) -> ()
  }) : () -> ()
}) : () -> ()
