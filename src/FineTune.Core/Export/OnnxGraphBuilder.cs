using System.Globalization;
using Google.Protobuf;
using Onnx;
using static TorchSharp.torch;

namespace FineTune.Core.Export;

/// <summary>
/// A value flowing through the graph being written: its ONNX name and what TorchSharp computes for it on the
/// trace input. The trace gives every shape the writer needs (adaptive pooling, residual connections) and
/// lets the exporter check the graph's structure against the module's own forward.
/// </summary>
internal sealed record OnnxValue(string Name, Tensor Trace);

/// <summary>
/// Builds an ONNX graph one operator at a time, computing each operator's result on the trace alongside with
/// the TorchSharp op of the same meaning.
/// </summary>
/// <param name="externalData">where initializers go instead of the graph, when the weights are too large for one message</param>
internal sealed class OnnxGraphBuilder(OnnxExternalData? externalData = null)
{
    private readonly GraphProto _graph = new() { Name = "finetune" };
    private readonly HashSet<string> _initializers = [];
    private int _next;

    public GraphProto Graph => _graph;

    public string Initializer(string name, Tensor value)
    {
        if (!_initializers.Add(name)) throw new InvalidOperationException($"initializer '{name}' written twice");
        using var values = value.detach().cpu().to(float32).contiguous();
        var proto = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Float };
        proto.Dims.AddRange(values.shape);
        if (externalData is not null && values.NumberOfElements * sizeof(float) >= OnnxExternalData.MinTensorBytes)
            externalData.Add(proto, values.bytes);
        else
            proto.RawData = ByteString.CopyFrom(values.bytes);
        _graph.Initializer.Add(proto);
        return name;
    }

    public string Constant(string name, float[] values, params long[] shape)
    {
        using var tensor = TorchSharp.torch.tensor(values, shape);
        return Initializer(name, tensor);
    }

    /// <summary>A one-dimensional int64 initializer (shapes, axes, slice bounds, gather indices).</summary>
    public string Int64s(string name, long[] values)
    {
        var proto = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Int64 };
        proto.Dims.Add(values.Length);
        proto.Int64Data.AddRange(values);
        if (!_initializers.Add(name)) throw new InvalidOperationException($"initializer '{name}' written twice");
        _graph.Initializer.Add(proto);
        return name;
    }

    /// <summary>A rank-0 int64 (a Gather index).</summary>
    public string Int64(string name, long value)
    {
        var proto = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Int64 };
        proto.Int64Data.Add(value);
        if (!_initializers.Add(name)) throw new InvalidOperationException($"initializer '{name}' written twice");
        _graph.Initializer.Add(proto);
        return name;
    }

    /// <summary>A rank-0 float (Clip's bounds).</summary>
    public string Scalar(string name, float value)
    {
        using var tensor = TorchSharp.torch.tensor(value);
        return Initializer(name, tensor);
    }

    /// <summary>Adds one operator with a single output and returns that output with its trace.</summary>
    public OnnxValue Node(string opType, string scope, IEnumerable<string> inputs, Tensor trace, params AttributeProto[] attributes)
    {
        string output = $"{scope}/{opType}_{_next++}";
        var node = new NodeProto { OpType = opType, Name = output };
        node.Input.AddRange(inputs);
        node.Output.Add(output);
        node.Attribute.AddRange(attributes);
        _graph.Node.Add(node);
        return new OnnxValue(output, trace);
    }

    public static AttributeProto Ints(string name, IEnumerable<long> values)
    {
        var attribute = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Ints };
        attribute.Ints.AddRange(values);
        return attribute;
    }

    public static AttributeProto Int(string name, long value) =>
        new() { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = value };

    public static AttributeProto Float(string name, float value) =>
        new() { Name = name, Type = AttributeProto.Types.AttributeType.Float, F = value };

    public static ValueInfoProto ValueInfo(string name, params object[] dims)
    {
        var shape = new TensorShapeProto();
        foreach (var dim in dims)
        {
            shape.Dim.Add(dim switch
            {
                string param => new TensorShapeProto.Types.Dimension { DimParam = param },
                long value => new TensorShapeProto.Types.Dimension { DimValue = value },
                int value => new TensorShapeProto.Types.Dimension { DimValue = value },
                _ => throw new ArgumentException($"dimension {dim} is neither a name nor a size", nameof(dims)),
            });
        }
        return new ValueInfoProto
        {
            Name = name,
            Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)TensorProto.Types.DataType.Float, Shape = shape } },
        };
    }
}

/// <summary>
/// ONNX's external data: initializers written into one file beside the graph, each page-aligned, the graph naming the
/// file (relative to itself), offset and length.
/// </summary>
internal sealed class OnnxExternalData(Stream stream, string location)
{
    /// <summary>ONNX's rule of thumb for external data: tensors under this stay in the graph.</summary>
    public const int MinTensorBytes = 1024;

    private const int Page = 4096;

    public void Add(TensorProto tensor, ReadOnlySpan<byte> bytes)
    {
        long offset = (stream.Position + Page - 1) / Page * Page;
        stream.SetLength(offset);
        stream.Position = offset;
        stream.Write(bytes);
        tensor.DataLocation = TensorProto.Types.DataLocation.External;
        tensor.ExternalData.Add(new StringStringEntryProto { Key = "location", Value = location });
        tensor.ExternalData.Add(new StringStringEntryProto { Key = "offset", Value = offset.ToString(CultureInfo.InvariantCulture) });
        tensor.ExternalData.Add(new StringStringEntryProto { Key = "length", Value = bytes.Length.ToString(CultureInfo.InvariantCulture) });
    }
}
