using static TorchSharp.torch;

namespace FineTune.Core.Tests;

internal static class TensorExtensions
{
    /// <summary>Bitwise the same shape and values (TorchSharp's <c>equal</c> is element-wise).</summary>
    public static bool SameAs(this Tensor a, Tensor b) =>
        a.shape.SequenceEqual(b.shape) && a.dtype == b.dtype && a.eq(b).all().item<bool>();
}
