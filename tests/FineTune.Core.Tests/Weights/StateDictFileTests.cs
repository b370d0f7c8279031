using FineTune.Core.Models;
using FineTune.Core.Weights;
using static TorchSharp.torch;

namespace FineTune.Core.Tests.Weights;

public sealed class StateDictFileTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("statedict-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Theory]
    [InlineData(StateDictFormat.PyTorch)]
    [InlineData(StateDictFormat.Safetensors)]
    [InlineData(StateDictFormat.TorchSharp)]
    public void EachFormatRoundTripsAndIsRecognisedByItsContent(StateDictFormat format)
    {
        using var scope = NewDisposeScope();
        using var model = FineTuneModel.Create(ModelRegistry.Get("mobilenet_v3_small"), 3, seed: 4);
        var original = model.Module.state_dict();
        var path = Path.Combine(_dir, "weights.bin");

        StateDictFile.Write(original, path, format);
        var head = new byte[16];
        using (var stream = File.OpenRead(path)) stream.ReadExactly(head);
        var read = StateDictFile.Read(path);

        Assert.Equal(format, StateDictFile.Detect(head));
        Assert.Equal(original.Keys.Order(), read.Keys.Order());
        foreach (var (key, value) in original)
        {
            Assert.Equal(value.dtype, read[key].dtype);
            Assert.True(value.SameAs(read[key]), key);
        }
    }

    [Fact]
    public void SafetensorsSayTheyHoldPyTorchTensorsAndStayAligned()
    {
        using var scope = NewDisposeScope();
        var path = Path.Combine(_dir, "model.safetensors");
        StateDictFile.Write(new Dictionary<string, Tensor> { ["w"] = arange(5, dtype: float32), ["b"] = ones(3, dtype: float64) }, path, StateDictFormat.Safetensors);

        byte[] bytes = File.ReadAllBytes(path);
        int length = (int)BitConverter.ToUInt64(bytes, 0);
        Assert.Equal(0, length % 8);
        var header = System.Text.Json.JsonDocument.Parse(bytes.AsMemory(8, length)).RootElement;
        Assert.Equal("pt", header.GetProperty("__metadata__").GetProperty("format").GetString());
        var read = StateDictFile.Read(path);
        Assert.Equal([0f, 1f, 2f, 3f, 4f], read["w"].data<float>().ToArray());
        Assert.Equal([1d, 1d, 1d], read["b"].data<double>().ToArray());
    }

    [Fact]
    public void TorchSharpsOwnSaveIsReadable()
    {
        using var scope = NewDisposeScope();
        using var model = FineTuneModel.Create(ModelRegistry.Get("resnet18"), 2, seed: 4);
        var path = Path.Combine(_dir, "model.dat");
        model.Module.save(path);

        var read = StateDictFile.Read(path);

        Assert.True(read["fc.weight"].SameAs(model.Head.weight!));
        Assert.Equal(model.Module.state_dict().Count, read.Count);
    }

    [Fact]
    public void GarbageIsAClearError()
    {
        var path = Path.Combine(_dir, "garbage.pth");
        File.WriteAllText(path, "<html>404 not found</html>");
        var error = Assert.Throws<InvalidWeightsException>(() => StateDictFile.Read(path));
        Assert.Contains(StateDictFile.NotACheckpoint, error.Message);
    }
}
