// RUN: canonicalize,cse,canonicalize
// 2 * x becomes x * 2, so CSE merges it with the other x * 2; then x*2 - x*2 is zero for
// integers (a broadcast of 0 to the symbolic shape), and 0 + max(x, 1) is max(x, 1) with the
// constant moved to the right.
// CHECK-NOT: "sc.mul"
// CHECK-NOT: "sc.sub"
// CHECK: %one = "sc.constant"() {value = dense<1> : tensor<i64>}
// CHECK-NEXT: %0 = "sc.maximum"(%x, %one)
// CHECK-NEXT: "func.return"(%0)
"builtin.module"() ({
  "func.func"() <{arg_attrs = [{sc.dims = ["tokens", 4 : i64], sc.name = "x"}], function_type = (tensor<?x4xi64>) -> tensor<?x4xi64>, sym_name = "main"}> ({
  ^bb0(%x: tensor<?x4xi64>):
    %two = "sc.constant"() {value = dense<2> : tensor<i64>} : () -> tensor<i64>
    %a = "sc.mul"(%two, %x) : (tensor<i64>, tensor<?x4xi64>) -> tensor<?x4xi64>
    %two2 = "sc.constant"() {value = dense<2> : tensor<i64>} : () -> tensor<i64>
    %b = "sc.mul"(%x, %two2) : (tensor<?x4xi64>, tensor<i64>) -> tensor<?x4xi64>
    %d = "sc.sub"(%a, %b) : (tensor<?x4xi64>, tensor<?x4xi64>) -> tensor<?x4xi64>
    %one = "sc.constant"() {value = dense<1> : tensor<i64>} : () -> tensor<i64>
    %m = "sc.maximum"(%one, %x) : (tensor<i64>, tensor<?x4xi64>) -> tensor<?x4xi64>
    %r = "sc.add"(%d, %m) : (tensor<?x4xi64>, tensor<?x4xi64>) -> tensor<?x4xi64>
    "func.return"(%r) : (tensor<?x4xi64>) -> ()
  }) : () -> ()
}) : () -> ()
