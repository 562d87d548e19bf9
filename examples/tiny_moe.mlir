"builtin.module"() ({
  "func.func"() <{arg_attrs = [{sc.dims = ["tokens", 64 : i64], sc.name = "x"}], function_type = (tensor<?x64xf32>) -> tensor<?x64xf32>, sym_name = "main"}> ({
  ^bb0(%x: tensor<?x64xf32>):
    %gate.weight = "sc.param"() {name = "gate.weight"} : () -> tensor<8x64xf32>
    %0 = "sc.linear"(%x, %gate.weight) : (tensor<?x64xf32>, tensor<8x64xf32>) -> tensor<?x8xf32>
    %1 = "sc.softmax"(%0) {axis = -1 : i64} : (tensor<?x8xf32>) -> tensor<?x8xf32>
    %2:2 = "sc.topk"(%1) {axis = -1 : i64, k = 2 : i64, largest = true} : (tensor<?x8xf32>) -> (tensor<?x2xf32>, tensor<?x2xi64>)
    %3 = "sc.sum"(%2#0) {axes = array<i64: -1>, keepdims = true} : (tensor<?x2xf32>) -> tensor<?x1xf32>
    %4 = "sc.div"(%2#0, %3) : (tensor<?x2xf32>, tensor<?x1xf32>) -> tensor<?x2xf32>
    %5 = "sc.constant"() {value = dense<0.0> : tensor<f32>} : () -> tensor<f32>
    %6 = "sc.broadcast_to"(%5) {shape = ["tokens", 8 : i64]} : (tensor<f32>) -> tensor<?x8xf32>
    %7 = "sc.scatter"(%6, %2#1, %4) {axis = -1 : i64} : (tensor<?x8xf32>, tensor<?x2xi64>, tensor<?x2xf32>) -> tensor<?x8xf32>
    %experts.0.gate_proj.weight = "sc.param"() {name = "experts.0.gate_proj.weight"} : () -> tensor<128x64xf32>
    %8 = "sc.linear"(%x, %experts.0.gate_proj.weight) : (tensor<?x64xf32>, tensor<128x64xf32>) -> tensor<?x128xf32>
    %9 = "sc.silu"(%8) : (tensor<?x128xf32>) -> tensor<?x128xf32>
    %experts.0.up_proj.weight = "sc.param"() {name = "experts.0.up_proj.weight"} : () -> tensor<128x64xf32>
    %10 = "sc.linear"(%x, %experts.0.up_proj.weight) : (tensor<?x64xf32>, tensor<128x64xf32>) -> tensor<?x128xf32>
    %11 = "sc.mul"(%9, %10) : (tensor<?x128xf32>, tensor<?x128xf32>) -> tensor<?x128xf32>
    %experts.0.down_proj.weight = "sc.param"() {name = "experts.0.down_proj.weight"} : () -> tensor<64x128xf32>
    %12 = "sc.linear"(%11, %experts.0.down_proj.weight) : (tensor<?x128xf32>, tensor<64x128xf32>) -> tensor<?x64xf32>
    %13 = "sc.slice"(%7) {axis = 1 : i64, step = 1 : i64, stop = 1 : i64} : (tensor<?x8xf32>) -> tensor<?x1xf32>
    %14 = "sc.mul"(%12, %13) : (tensor<?x64xf32>, tensor<?x1xf32>) -> tensor<?x64xf32>
    %experts.1.gate_proj.weight = "sc.param"() {name = "experts.1.gate_proj.weight"} : () -> tensor<128x64xf32>
    %15 = "sc.linear"(%x, %experts.1.gate_proj.weight) : (tensor<?x64xf32>, tensor<128x64xf32>) -> tensor<?x128xf32>
    %16 = "sc.silu"(%15) : (tensor<?x128xf32>) -> tensor<?x128xf32>
    %experts.1.up_proj.weight = "sc.param"() {name = "experts.1.up_proj.weight"} : () -> tensor<128x64xf32>
    %17 = "sc.linear"(%x, %experts.1.up_proj.weight) : (tensor<?x64xf32>, tensor<128x64xf32>) -> tensor<?x128xf32>
    %18 = "sc.mul"(%16, %17) : (tensor<?x128xf32>, tensor<?x128xf32>) -> tensor<?x128xf32>
    %experts.1.down_proj.weight = "sc.param"() {name = "experts.1.down_proj.weight"} : () -> tensor<64x128xf32>
    %19 = "sc.linear"(%18, %experts.1.down_proj.weight) : (tensor<?x128xf32>, tensor<64x128xf32>) -> tensor<?x64xf32>
    %20 = "sc.slice"(%7) {axis = 1 : i64, start = 1 : i64, step = 1 : i64, stop = 2 : i64} : (tensor<?x8xf32>) -> tensor<?x1xf32>
    %21 = "sc.mul"(%19, %20) : (tensor<?x64xf32>, tensor<?x1xf32>) -> tensor<?x64xf32>
    %22 = "sc.add"(%14, %21) : (tensor<?x64xf32>, tensor<?x64xf32>) -> tensor<?x64xf32>
    %experts.2.gate_proj.weight = "sc.param"() {name = "experts.2.gate_proj.weight"} : () -> tensor<128x64xf32>
    %23 = "sc.linear"(%x, %experts.2.gate_proj.weight) : (tensor<?x64xf32>, tensor<128x64xf32>) -> tensor<?x128xf32>
    %24 = "sc.silu"(%23) : (tensor<?x128xf32>) -> tensor<?x128xf32>
    %experts.2.up_proj.weight = "sc.param"() {name = "experts.2.up_proj.weight"} : () -> tensor<128x64xf32>
    %25 = "sc.linear"(%x, %experts.2.up_proj.weight) : (tensor<?x64xf32>, tensor<128x64xf32>) -> tensor<?x128xf32>
    %26 = "sc.mul"(%24, %25) : (tensor<?x128xf32>, tensor<?x128xf32>) -> tensor<?x128xf32>
    %experts.2.down_proj.weight = "sc.param"() {name = "experts.2.down_proj.weight"} : () -> tensor<64x128xf32>
    %27 = "sc.linear"(%26, %experts.2.down_proj.weight) : (tensor<?x128xf32>, tensor<64x128xf32>) -> tensor<?x64xf32>
    %28 = "sc.slice"(%7) {axis = 1 : i64, start = 2 : i64, step = 1 : i64, stop = 3 : i64} : (tensor<?x8xf32>) -> tensor<?x1xf32>
    %29 = "sc.mul"(%27, %28) : (tensor<?x64xf32>, tensor<?x1xf32>) -> tensor<?x64xf32>
    %30 = "sc.add"(%22, %29) : (tensor<?x64xf32>, tensor<?x64xf32>) -> tensor<?x64xf32>
    %experts.3.gate_proj.weight = "sc.param"() {name = "experts.3.gate_proj.weight"} : () -> tensor<128x64xf32>
    %31 = "sc.linear"(%x, %experts.3.gate_proj.weight) : (tensor<?x64xf32>, tensor<128x64xf32>) -> tensor<?x128xf32>
    %32 = "sc.silu"(%31) : (tensor<?x128xf32>) -> tensor<?x128xf32>
    %experts.3.up_proj.weight = "sc.param"() {name = "experts.3.up_proj.weight"} : () -> tensor<128x64xf32>
    %33 = "sc.linear"(%x, %experts.3.up_proj.weight) : (tensor<?x64xf32>, tensor<128x64xf32>) -> tensor<?x128xf32>
    %34 = "sc.mul"(%32, %33) : (tensor<?x128xf32>, tensor<?x128xf32>) -> tensor<?x128xf32>
    %experts.3.down_proj.weight = "sc.param"() {name = "experts.3.down_proj.weight"} : () -> tensor<64x128xf32>
    %35 = "sc.linear"(%34, %experts.3.down_proj.weight) : (tensor<?x128xf32>, tensor<64x128xf32>) -> tensor<?x64xf32>
    %36 = "sc.slice"(%7) {axis = 1 : i64, start = 3 : i64, step = 1 : i64, stop = 4 : i64} : (tensor<?x8xf32>) -> tensor<?x1xf32>
    %37 = "sc.mul"(%35, %36) : (tensor<?x64xf32>, tensor<?x1xf32>) -> tensor<?x64xf32>
    %38 = "sc.add"(%30, %37) : (tensor<?x64xf32>, tensor<?x64xf32>) -> tensor<?x64xf32>
    %experts.4.gate_proj.weight = "sc.param"() {name = "experts.4.gate_proj.weight"} : () -> tensor<128x64xf32>
    %39 = "sc.linear"(%x, %experts.4.gate_proj.weight) : (tensor<?x64xf32>, tensor<128x64xf32>) -> tensor<?x128xf32>
    %40 = "sc.silu"(%39) : (tensor<?x128xf32>) -> tensor<?x128xf32>
    %experts.4.up_proj.weight = "sc.param"() {name = "experts.4.up_proj.weight"} : () -> tensor<128x64xf32>
    %41 = "sc.linear"(%x, %experts.4.up_proj.weight) : (tensor<?x64xf32>, tensor<128x64xf32>) -> tensor<?x128xf32>
    %42 = "sc.mul"(%40, %41) : (tensor<?x128xf32>, tensor<?x128xf32>) -> tensor<?x128xf32>
    %experts.4.down_proj.weight = "sc.param"() {name = "experts.4.down_proj.weight"} : () -> tensor<64x128xf32>
    %43 = "sc.linear"(%42, %experts.4.down_proj.weight) : (tensor<?x128xf32>, tensor<64x128xf32>) -> tensor<?x64xf32>
    %44 = "sc.slice"(%7) {axis = 1 : i64, start = 4 : i64, step = 1 : i64, stop = 5 : i64} : (tensor<?x8xf32>) -> tensor<?x1xf32>
    %45 = "sc.mul"(%43, %44) : (tensor<?x64xf32>, tensor<?x1xf32>) -> tensor<?x64xf32>
    %46 = "sc.add"(%38, %45) : (tensor<?x64xf32>, tensor<?x64xf32>) -> tensor<?x64xf32>
    %experts.5.gate_proj.weight = "sc.param"() {name = "experts.5.gate_proj.weight"} : () -> tensor<128x64xf32>
    %47 = "sc.linear"(%x, %experts.5.gate_proj.weight) : (tensor<?x64xf32>, tensor<128x64xf32>) -> tensor<?x128xf32>
    %48 = "sc.silu"(%47) : (tensor<?x128xf32>) -> tensor<?x128xf32>
    %experts.5.up_proj.weight = "sc.param"() {name = "experts.5.up_proj.weight"} : () -> tensor<128x64xf32>
    %49 = "sc.linear"(%x, %experts.5.up_proj.weight) : (tensor<?x64xf32>, tensor<128x64xf32>) -> tensor<?x128xf32>
    %50 = "sc.mul"(%48, %49) : (tensor<?x128xf32>, tensor<?x128xf32>) -> tensor<?x128xf32>
    %experts.5.down_proj.weight = "sc.param"() {name = "experts.5.down_proj.weight"} : () -> tensor<64x128xf32>
    %51 = "sc.linear"(%50, %experts.5.down_proj.weight) : (tensor<?x128xf32>, tensor<64x128xf32>) -> tensor<?x64xf32>
    %52 = "sc.slice"(%7) {axis = 1 : i64, start = 5 : i64, step = 1 : i64, stop = 6 : i64} : (tensor<?x8xf32>) -> tensor<?x1xf32>
    %53 = "sc.mul"(%51, %52) : (tensor<?x64xf32>, tensor<?x1xf32>) -> tensor<?x64xf32>
    %54 = "sc.add"(%46, %53) : (tensor<?x64xf32>, tensor<?x64xf32>) -> tensor<?x64xf32>
    %experts.6.gate_proj.weight = "sc.param"() {name = "experts.6.gate_proj.weight"} : () -> tensor<128x64xf32>
    %55 = "sc.linear"(%x, %experts.6.gate_proj.weight) : (tensor<?x64xf32>, tensor<128x64xf32>) -> tensor<?x128xf32>
    %56 = "sc.silu"(%55) : (tensor<?x128xf32>) -> tensor<?x128xf32>
    %experts.6.up_proj.weight = "sc.param"() {name = "experts.6.up_proj.weight"} : () -> tensor<128x64xf32>
    %57 = "sc.linear"(%x, %experts.6.up_proj.weight) : (tensor<?x64xf32>, tensor<128x64xf32>) -> tensor<?x128xf32>
    %58 = "sc.mul"(%56, %57) : (tensor<?x128xf32>, tensor<?x128xf32>) -> tensor<?x128xf32>
    %experts.6.down_proj.weight = "sc.param"() {name = "experts.6.down_proj.weight"} : () -> tensor<64x128xf32>
    %59 = "sc.linear"(%58, %experts.6.down_proj.weight) : (tensor<?x128xf32>, tensor<64x128xf32>) -> tensor<?x64xf32>
    %60 = "sc.slice"(%7) {axis = 1 : i64, start = 6 : i64, step = 1 : i64, stop = 7 : i64} : (tensor<?x8xf32>) -> tensor<?x1xf32>
    %61 = "sc.mul"(%59, %60) : (tensor<?x64xf32>, tensor<?x1xf32>) -> tensor<?x64xf32>
    %62 = "sc.add"(%54, %61) : (tensor<?x64xf32>, tensor<?x64xf32>) -> tensor<?x64xf32>
    %experts.7.gate_proj.weight = "sc.param"() {name = "experts.7.gate_proj.weight"} : () -> tensor<128x64xf32>
    %63 = "sc.linear"(%x, %experts.7.gate_proj.weight) : (tensor<?x64xf32>, tensor<128x64xf32>) -> tensor<?x128xf32>
    %64 = "sc.silu"(%63) : (tensor<?x128xf32>) -> tensor<?x128xf32>
    %experts.7.up_proj.weight = "sc.param"() {name = "experts.7.up_proj.weight"} : () -> tensor<128x64xf32>
    %65 = "sc.linear"(%x, %experts.7.up_proj.weight) : (tensor<?x64xf32>, tensor<128x64xf32>) -> tensor<?x128xf32>
    %66 = "sc.mul"(%64, %65) : (tensor<?x128xf32>, tensor<?x128xf32>) -> tensor<?x128xf32>
    %experts.7.down_proj.weight = "sc.param"() {name = "experts.7.down_proj.weight"} : () -> tensor<64x128xf32>
    %67 = "sc.linear"(%66, %experts.7.down_proj.weight) : (tensor<?x128xf32>, tensor<64x128xf32>) -> tensor<?x64xf32>
    %68 = "sc.slice"(%7) {axis = 1 : i64, start = 7 : i64, step = 1 : i64} : (tensor<?x8xf32>) -> tensor<?x1xf32>
    %69 = "sc.mul"(%67, %68) : (tensor<?x64xf32>, tensor<?x1xf32>) -> tensor<?x64xf32>
    %70 = "sc.add"(%62, %69) : (tensor<?x64xf32>, tensor<?x64xf32>) -> tensor<?x64xf32>
    "func.return"(%70) : (tensor<?x64xf32>) -> ()
  }) : () -> ()
}) : () -> ()
