using FineTune.Core.Data;
using FineTune.Core.Models;
using FineTune.Core.Weights;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace FineTune.Core.Tests.Weights;

public sealed class CntkResNet18Tests(ITestOutputHelper output)
{
    private static readonly IReadOnlyList<string> Photos =
        [.. TuxPaintStamps.Images("animals", 3), .. TuxPaintStamps.Images("vehicles", 2), .. TuxPaintStamps.Images("food", 1)];

    [Fact]
    public void ConvertedWeightsFitTheFamilyAndMatchOnnxRuntimeOnRealPhotos()
    {
        using var scope = NewDisposeScope();
        var family = ModelRegistry.Get(CntkResNet18.FamilyName);
        using var model = FineTuneModel.Create(family, numClasses: 4, seed: 0);
        PretrainedWeights.LoadBackbone(model, family.BundledWeights!());
        model.EvalMode();
        using var session = new InferenceSession(CntkResNet18.ModelPath);
        string inputName = session.InputMetadata.Keys.Single();

        foreach (var photo in Photos)
        {
            var input = ImageLoader.Load(photo, family.Preprocessing).unsqueeze(0);
            TorchSharp.torch.Tensor ours;
            using (no_grad()) ours = model.Features(input);

            var onnxInput = new DenseTensor<float>(input.data<float>().ToArray(), [1, 3, 224, 224]);
            using var results = session.Run([NamedOnnxValue.CreateFromTensor(inputName, onnxInput)]);
            var theirs = tensor(results.Single().AsEnumerable<float>().ToArray(), [1, 512]);

            double difference = (ours - theirs).abs().max().item<float>();
            output.WriteLine($"{Path.GetFileName(photo)}: max |Δfeature| = {difference:E2}, max |feature| = {theirs.abs().max().item<float>():F2}");
            Assert.True(difference <= 1e-4, $"{photo}: max |Δfeature| = {difference}");
        }
    }

    [Fact]
    public void RgbVariantGivesNearlyTheNativeFeaturesFromStandardInput()
    {
        using var scope = NewDisposeScope();
        var native = ModelRegistry.Get(CntkResNet18.FamilyName);
        var rgb = ModelRegistry.Get(CntkResNet18.RgbFamilyName);
        using var nativeModel = FineTuneModel.Create(native, 2, seed: 0);
        using var rgbModel = FineTuneModel.Create(rgb, 2, seed: 0);
        PretrainedWeights.LoadBackbone(nativeModel, native.BundledWeights!());
        PretrainedWeights.LoadBackbone(rgbModel, rgb.BundledWeights!());
        nativeModel.EvalMode();
        rgbModel.EvalMode();
        Assert.Equal(Preprocessing.ImageNet().Mean, rgb.Preprocessing.Mean);
        Assert.Equal(Preprocessing.ImageNet().Std, rgb.Preprocessing.Std);
        Assert.Equal(ChannelOrder.Rgb, rgb.Preprocessing.ChannelOrder);

        foreach (var photo in Photos)
        {
            using var _ = no_grad();
            var a = nativeModel.Features(ImageLoader.Load(photo, native.Preprocessing).unsqueeze(0));
            var b = rgbModel.Features(ImageLoader.Load(photo, rgb.Preprocessing).unsqueeze(0));
            double cosine = nn.functional.cosine_similarity(a, b).item<float>();
            double relative = ((a - b).norm() / a.norm()).item<float>();
            output.WriteLine($"{Path.GetFileName(photo)}: cosine {cosine:F5}, relative L2 difference {relative:F4}");
            Assert.True(cosine >= 0.998, $"{photo}: cosine similarity {cosine}");
        }
    }
}
