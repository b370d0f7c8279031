using FineTune.Core.Models;

namespace FineTune.Core.Export.Forwards;

/// <summary>
/// Swin's (v1, v2) ONNX forwards on the channels-last map: windows shifted by slicing and concatenating (opset 17 has no
/// Roll), attention per window with the relative position bias and shift mask as one constant (fixed once the input size is).
/// </summary>
internal static class SwinOnnx
{
    internal static IReadOnlyDictionary<string, OnnxForward> Forwards { get; } = new Dictionary<string, OnnxForward>
    {
        // The average over positions of the channels-last map.
        [nameof(SwinTransformer)] = (w, m, path, x) => w.Child(m, path, "head", w.ReduceMean(path, w.Children(m, path, x, "features", "norm"), 1, 2)),
        [nameof(SwinTransformer.PatchMerging)] = (w, m, path, x) =>
        {
            long height = x.Trace.shape[1], width = x.Trace.shape[2];
            var padded = w.PadEnd(path, x, 0, height % 2, width % 2, 0);
            long paddedHeight = padded.Trace.shape[1], paddedWidth = padded.Trace.shape[2];
            // Each 2×2 neighbourhood's positions in torchvision's order: (0, 0), (1, 0), (0, 1), (1, 1).
            var parts = new[] { (0, 0), (1, 0), (0, 1), (1, 1) }
                .Select(at => w.Slice(path, w.Slice(path, padded, 1, at.Item1, paddedHeight, 2), 2, at.Item2, paddedWidth, 2)).ToList();
            var merged = w.Concat(path, parts, 3);
            return ((SwinTransformer.PatchMerging)m).PostNorm
                ? w.Children(m, path, merged, "reduction", "norm")
                : w.Children(m, path, merged, "norm", "reduction");
        },
        [nameof(SwinTransformer.Block)] = (w, m, path, x) =>
        {
            bool postNorm = ((SwinTransformer.Block)m).PostNorm;
            var attended = w.Add(path, postNorm ? w.Children(m, path, x, "attn", "norm1") : w.Children(m, path, x, "norm1", "attn"), x);
            return w.Add(path, postNorm ? w.Children(m, path, attended, "mlp", "norm2") : w.Children(m, path, attended, "norm2", "mlp"), attended);
        },
        [nameof(SwinTransformer.ShiftedWindowAttention)] = ShiftedWindowAttention,
    };

    private static OnnxValue ShiftedWindowAttention(OnnxModuleWriter w, TorchSharp.torch.nn.Module m, string path, OnnxValue x)
    {
        var attention = (SwinTransformer.ShiftedWindowAttention)m;
        long batch = x.Trace.shape[0], height = x.Trace.shape[1], width = x.Trace.shape[2], dim = x.Trace.shape[3], window = attention.Window;
        var padded = w.PadEnd(path, x, 0, (window - height % window) % window, (window - width % window) % window, 0);
        long paddedHeight = padded.Trace.shape[1], paddedWidth = padded.Trace.shape[2];
        var (shiftH, shiftW) = attention.ShiftsFor(paddedHeight, paddedWidth);
        var shifted = w.Roll(path, w.Roll(path, padded, -shiftH, 1), -shiftW, 2);

        long rows = paddedHeight / window, columns = paddedWidth / window;
        var tiled = w.Reshape(path, shifted, batch, rows, window, columns, window, dim);
        var windows = w.Reshape(path, w.Transpose(path, tiled, 0, 1, 3, 2, 4, 5), batch, rows * columns, window * window, dim);

        var qkvLinear = (TorchSharp.Modules.Linear)m.named_children().Single(c => c.name == "qkv").module;
        using var qkvBias = attention.QkvBias();
        var qkv = AttentionOnnx.Project(w, OnnxModuleWriter.Join(path, "qkv"), windows, qkvLinear.weight!, qkvBias);
        var (q, k, v) = AttentionOnnx.SplitHeads(w, path, qkv, attention.Heads);
        using var bias = attention.LogitBias(paddedHeight, paddedWidth, x.Trace.device);
        OnnxValue attended;
        if (attention.Cosine)
        {
            using var scale = attention.CosineScale();
            attended = AttentionOnnx.AttendByCosine(w, path, q, k, v, scale, bias);
        }
        else
            attended = AttentionOnnx.Attend(w, path, q, k, v, 1 / Math.Sqrt(q.Trace.shape[^1]), bias);
        var projected = w.Child(m, path, "proj", AttentionOnnx.MergeHeads(w, path, attended));

        var untiled = w.Transpose(path, w.Reshape(path, projected, batch, rows, columns, window, window, dim), 0, 1, 3, 2, 4, 5);
        var map = w.Reshape(path, untiled, batch, paddedHeight, paddedWidth, dim);
        map = w.Roll(path, w.Roll(path, map, shiftH, 1), shiftW, 2);
        if (paddedHeight != height) map = w.Slice(path, map, 1, 0, height);
        return paddedWidth != width ? w.Slice(path, map, 2, 0, width) : map;
    }
}
