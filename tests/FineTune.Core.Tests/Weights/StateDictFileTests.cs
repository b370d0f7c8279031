using System.Text;
using FineTune.Core.Models;
using FineTune.Core.Weights;
using FineTune.Testing;
using TorchSharp.Modules;
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

        Assert.True(read["fc.weight"].SameAs(((Linear)model.Head).weight!));
        Assert.Equal(model.Module.state_dict().Count, read.Count);
    }

    private const string Secret = "AKIAQUOTEDSECRET";

    /// <summary>Files that are no checkpoint, or checkpoints that lie, each carrying <see cref="Secret"/> where a reason could quote it.</summary>
    private static readonly Dictionary<string, Func<byte[]>> NotCheckpoints = new()
    {
        ["/etc/passwd"] = () => File.ReadAllBytes("/etc/passwd"),
        ["a credentials file"] = () => Encoding.UTF8.GetBytes($"[default]\naws_access_key_id = {Secret}\n"),
        ["TorchSharp-shaped, named by the secret"] = () => [1, (byte)Secret.Length, .. Encoding.ASCII.GetBytes(Secret), 99, 0],
        ["TorchSharp-shaped, then the secret"] = () => [0, .. Encoding.ASCII.GetBytes(Secret)],
        ["safetensors naming the secret"] = () => HostileFiles.Safetensors($$$"""{"{{{Secret}}}":{"dtype":"{{{Secret}}}","shape":[1],"data_offsets":[0,4]}}""", 4),
        ["safetensors whose header is not JSON"] = () => HostileFiles.Safetensors("{" + Secret, 0),
        ["pickle calling the secret"] = () => HostileFiles.TorchArchive([0x80, 2, .. Encoding.ASCII.GetBytes($"c{Secret}\n{Secret}\n"), (byte)')', (byte)'R', (byte)'.']),
    };

    public static TheoryData<string> NotCheckpointNames => [.. NotCheckpoints.Keys];

    [Theory]
    [MemberData(nameof(NotCheckpointNames))]
    public void ARefusalNeverQuotesTheFile(string name)
    {
        var bytes = NotCheckpoints[name]();
        var path = Path.Combine(_dir, "weights.pth");
        File.WriteAllBytes(path, bytes);

        var error = Assert.Throws<InvalidWeightsException>(() => StateDictFile.Read(path));

        Assert.DoesNotContain(Secret, error.Message);
        // No run of the file's text (a name, a line) appears in the reason, but the format's own keys may.
        string[] formatKeys = ["dtype", "shape", "data_offsets"];
        var words = Encoding.UTF8.GetString(bytes).Split([':', '/', '\n', ' ', ',', '=', '"', '{', '}', '[', ']'], StringSplitOptions.RemoveEmptyEntries);
        Assert.DoesNotContain(words.Where(w => w.Length >= 5 && w.All(char.IsAsciiLetterOrDigit)).Except(formatKeys), w => error.Message.Contains(w, StringComparison.Ordinal));
    }

    /// <summary>
    /// torch.save keeps views as they are: a transposed tensor, a slice past its storage's start, two tensors sharing
    /// one storage, a half-precision one, a 0-d one, an empty one. Each is read as PyTorch has it, whole or into a
    /// tensor of the model's own (another dtype too), and a model loads from the file tensor by tensor.
    /// </summary>
    [Fact]
    public void PyTorchsViewsAreReadAsPyTorchHasThem()
    {
        string path = Path.Combine(_dir, "views.pth");
        var python = ProcessRunner.Run("/usr/bin/python3", ["-c", """
            import json, sys, torch
            base = torch.arange(24, dtype=torch.float32).reshape(4, 6) / 7
            d = {"transposed": base.t(), "slice": base[1:3, 2:5], "rows": base[2:], "half": (base[0] * 3).half(),
                 "scalar": torch.tensor(41, dtype=torch.int64), "empty": torch.zeros(0, 3)}
            torch.save(d, sys.argv[1])
            print(json.dumps({k: {"shape": list(v.shape), "values": v.double().flatten().tolist()} for k, v in d.items()}))
            """, path]);
        Assert.True(python.ExitCode == 0, python.Error);
        var expected = System.Text.Json.JsonDocument.Parse(python.Output).RootElement;

        using var scope = NewDisposeScope();
        var read = StateDictFile.Read(path);
        using var reader = StateDictReader.Open(path);
        Assert.Equal(expected.EnumerateObject().Select(p => p.Name), reader.Tensors.Select(t => t.Name));
        foreach (var tensor in reader.Tensors)
        {
            var want = expected.GetProperty(tensor.Name);
            long[] shape = want.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64()).ToArray();
            double[] values = want.GetProperty("values").EnumerateArray().Select(v => v.GetDouble()).ToArray();
            Assert.Equal(shape, tensor.Shape);
            Assert.Equal(values, read[tensor.Name].to_type(float64).flatten().data<double>().ToArray());
            var intoDouble = zeros(shape, float64);
            reader.ReadInto(tensor, intoDouble);
            Assert.Equal(values, intoDouble.flatten().data<double>().ToArray());
        }
        Assert.Equal(ScalarType.Float16, read["half"].dtype);
        Assert.Equal(ScalarType.Int64, read["scalar"].dtype);
    }

    /// <summary>
    /// One 8 MB storage named under 600 keys through a strided view (torch.save keeps it once): each key is read on its own,
    /// through the whole storage, so the file would make the reader go through 4.8 GB. Refused before anything is read.
    /// </summary>
    [Fact]
    public void AStorageNamedUnderManyKeysIsRefusedUnread()
    {
        string path = Path.Combine(_dir, "aliased.pth");
        var python = ProcessRunner.Run("/usr/bin/python3", ["-c", """
            import sys, torch
            view = torch.zeros(1 << 21)[::2]
            torch.save({f"k{i}": view for i in range(600)}, sys.argv[1])
            """, path]);
        Assert.True(python.ExitCode == 0, python.Error);

        var error = Assert.Throws<InvalidWeightsException>(() => StateDictReader.Open(path).Dispose());
        Assert.Contains("a storage named under many keys", error.Message);
    }

    [Theory]
    [InlineData(StateDictFormat.PyTorch)]
    [InlineData(StateDictFormat.Safetensors)]
    [InlineData(StateDictFormat.TorchSharp)]
    public void AModelLoadsFromAFileTensorByTensor(StateDictFormat format)
    {
        using var scope = NewDisposeScope();
        var family = ModelRegistry.Get("mobilenet_v3_small");
        using var source = FineTuneModel.Create(family, 3, seed: 4);
        string path = Path.Combine(_dir, "model.bin");
        StateDictFile.Write(source.Module.state_dict(), path, format);
        using var target = FineTuneModel.Create(family, 3, seed: 5);
        var parameters = target.Module.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.Handle);

        PretrainedWeights.LoadAll(target, path);

        foreach (var (key, value) in source.Module.state_dict())
        {
            Assert.True(value.SameAs(target.Module.state_dict()[key]), key);
            Assert.Equal(parameters[key], target.Module.state_dict()[key].Handle);
        }
    }

    [Fact]
    public void AFileThatIsNoCheckpointIsCalledSo()
    {
        var path = Path.Combine(_dir, "passwd");
        File.Copy("/etc/passwd", path);
        var error = Assert.Throws<InvalidWeightsException>(() => StateDictFile.Read(path));
        Assert.StartsWith(StateDictFile.NotACheckpoint, error.Message);
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
