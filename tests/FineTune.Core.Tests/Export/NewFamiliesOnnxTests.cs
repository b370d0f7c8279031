using FineTune.Core.Export;
using FineTune.Core.Export.Forwards;
using FineTune.Core.Models;
using Microsoft.ML.OnnxRuntime;
using DenseTensor = Microsoft.ML.OnnxRuntime.Tensors.DenseTensor<float>;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace FineTune.Core.Tests.Export;

/// <summary>
/// The families not yet in the registry, built from their own constructors with a 3-class head and their forwards
/// passed in: ONNX Runtime gives TorchSharp's logits to 1e-4 on a random batch at 64 px.
/// </summary>
public sealed class NewFamiliesOnnxTests(ITestOutputHelper output)
{
    private static readonly string[] Classes = ["a", "b", "c"];

    private static readonly Dictionary<string, (Func<nn.Module<Tensor, Tensor>> Create, string Head, IReadOnlyDictionary<string, OnnxForward> Forwards)> Cases = new()
    {
        ["shufflenet_v2_x0_5"] = (ShuffleNetV2.Builders[0].Create, "fc", ShuffleNetV2Onnx.Forwards),
    };

    public static TheoryData<string> Names => new(Cases.Keys);

    [Theory]
    [MemberData(nameof(Names))]
    public void OnnxRuntimeGivesTorchSharpsLogits(string name)
    {
        var (create, head, forwards) = Cases[name];
        using var model = FineTuneModel.Create(new ModelFamily(name, create, head, Preprocessing.ImageNet()), Classes.Length, seed: 7);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        model.EvalMode();
        var batch = randn([2, 3, 64, 64], generator: new Generator(1));
        var expected = model.Forward(batch).data<float>().ToArray();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var bytes = OnnxExporter.ToBytes(OnnxExporter.Export(model, Classes, Preprocessing.ImageNet(), 64, forwards));
        using var session = new InferenceSession(bytes);
        var input = new DenseTensor(batch.data<float>().ToArray(), [2, 3, 64, 64]);
        using var results = session.Run([NamedOnnxValue.CreateFromTensor(OnnxExporter.InputName, input)]);
        var actual = results.Single().AsTensor<float>().ToArray();
        double worst = expected.Zip(actual, (e, a) => Math.Abs(e - a)).Max();
        output.WriteLine($"{name}: max |ONNX Runtime − TorchSharp| {worst:E2}, largest |logit| {expected.Max(Math.Abs):F3}, {clock.Elapsed.TotalSeconds:F1} s");
        Assert.True(worst <= 1e-4, $"{name}: max difference {worst:E2}");
    }
}
