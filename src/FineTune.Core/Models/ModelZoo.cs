using TorchSharp;
using static TorchSharp.torch;

namespace FineTune.Core.Models;

/// <summary>Builds the vision models the service fine-tunes, with torchvision's parameter names.</summary>
public static class ModelZoo
{
    public static IReadOnlyList<string> Families { get; } = ["resnet18"];

    /// <summary>
    /// A freshly initialised model. Initialisation draws from torch's global generator, so the same
    /// <paramref name="seed"/> gives the same weights.
    /// </summary>
    public static nn.Module<Tensor, Tensor> Create(string family, int numClasses, long seed)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(numClasses, 1);
        torch.manual_seed(seed);
        return family switch
        {
            "resnet18" => torchvision.models.resnet18(num_classes: numClasses),
            _ => throw new ArgumentException(
                $"unknown model family '{family}'; known: {string.Join(", ", Families)}", nameof(family)),
        };
    }
}
