// RUN: fuse-projections
// q, k and v read x, each with a bias: one sc.linear over the stacked [q; k; v] weight and the
// stacked bias, three slices. The fourth linear of x reads a weight that sc.embedding reads too
// (a tied table): stacking would copy it, so it stays a linear of its own.
// CHECK: %attn.q_proj_k_proj_v_proj.weight = "sc.param"() {name = "attn.q_proj+k_proj+v_proj.weight"} : () -> tensor<16x8xf32>
// CHECK-NEXT: %attn.q_proj_k_proj_v_proj.bias = "sc.param"() {name = "attn.q_proj+k_proj+v_proj.bias"} : () -> tensor<16xf32>
// CHECK-NEXT: %0 = "sc.linear"(%x, %attn.q_proj_k_proj_v_proj.weight, %attn.q_proj_k_proj_v_proj.bias) : (tensor<?x8xf32>, tensor<16x8xf32>, tensor<16xf32>) -> tensor<?x16xf32>
// CHECK-NEXT: "sc.slice"(%0) {axis = 1 : i64, start = 0 : i64, step = 1 : i64, stop = 8 : i64}
// CHECK-NEXT: "sc.slice"(%0) {axis = 1 : i64, start = 8 : i64, step = 1 : i64, stop = 12 : i64}
// CHECK-NEXT: "sc.slice"(%0) {axis = 1 : i64, start = 12 : i64, step = 1 : i64, stop = 16 : i64}
// CHECK-NOT: name = "attn.q_proj.weight"
// CHECK: "sc.linear"(%x, %table)
// CHECK: "sc.embedding"(%ids, %table)
"builtin.module"() ({
  "func.func"() <{arg_attrs = [{sc.dims = ["tokens", 8 : i64], sc.name = "x"}, {sc.dims = ["tokens"], sc.name = "ids"}], function_type = (tensor<?x8xf32>, tensor<?xi64>) -> (tensor<?x8xf32>, tensor<?x4xf32>, tensor<?x4xf32>, tensor<?x6xf32>, tensor<?x8xf32>), sym_name = "main"}> ({
  ^bb0(%x: tensor<?x8xf32>, %ids: tensor<?xi64>):
    %wq = "sc.param"() {name = "attn.q_proj.weight"} : () -> tensor<8x8xf32>
    %bq = "sc.param"() {name = "attn.q_proj.bias"} : () -> tensor<8xf32>
    %q = "sc.linear"(%x, %wq, %bq) : (tensor<?x8xf32>, tensor<8x8xf32>, tensor<8xf32>) -> tensor<?x8xf32>
    %wk = "sc.param"() {name = "attn.k_proj.weight"} : () -> tensor<4x8xf32>
    %bk = "sc.param"() {name = "attn.k_proj.bias"} : () -> tensor<4xf32>
    %k = "sc.linear"(%x, %wk, %bk) : (tensor<?x8xf32>, tensor<4x8xf32>, tensor<4xf32>) -> tensor<?x4xf32>
    %wv = "sc.param"() {name = "attn.v_proj.weight"} : () -> tensor<4x8xf32>
    %bv = "sc.param"() {name = "attn.v_proj.bias"} : () -> tensor<4xf32>
    %v = "sc.linear"(%x, %wv, %bv) : (tensor<?x8xf32>, tensor<4x8xf32>, tensor<4xf32>) -> tensor<?x4xf32>
    %table = "sc.param"() {name = "embed.weight"} : () -> tensor<6x8xf32>
    %t = "sc.linear"(%x, %table) : (tensor<?x8xf32>, tensor<6x8xf32>) -> tensor<?x6xf32>
    %e = "sc.embedding"(%ids, %table) : (tensor<?xi64>, tensor<6x8xf32>) -> tensor<?x8xf32>
    "func.return"(%q, %k, %v, %t, %e) : (tensor<?x8xf32>, tensor<?x4xf32>, tensor<?x4xf32>, tensor<?x6xf32>, tensor<?x8xf32>) -> ()
  }) : () -> ()
}) : () -> ()
