using TorchSharp.Modules;
using static TorchSharp.torch;

namespace FineTune.Core.Models;

/// <summary>
/// Rewrites a frozen network for inference only, the way torch.jit.freeze does: every BatchNorm that directly follows a
/// convolution is folded into that convolution's weights and bias, and convolution weights are laid out channels-last,
/// which oneDNN runs without re-laying out each activation. Pairs inside a plain Sequential are found here; those a
/// family's own module types apply are declared by its file (<see cref="ModelArchitecture.FusionPairs"/>). The outputs equal the original network's to float rounding;
/// the module no longer has its family's state-dict layout, so only a network that is thrown away after use is fused, or
/// the frozen part of one that only trains and scores (<see cref="FineTuneModel.FuseFrozenPart"/>).
/// </summary>
internal static class InferenceFusion
{
    /// <summary>Fuses <paramref name="root"/> in place (see the class); returns how many batch norms were folded.</summary>
    /// <param name="familyPairs">the pairs the family's own module types apply (<see cref="ModelArchitecture.FusionPairs"/>)</param>
    /// <param name="within">the module paths to rewrite (a pair when both are), all when null</param>
    public static int Fuse(nn.Module root, IReadOnlyDictionary<string, (string Conv, string Norm)[]> familyPairs, Func<string, bool>? within = null)
    {
        // named_modules leaves out the root, whose own pairs (a ResNet's stem) count too.
        var modules = root.named_modules().Prepend(("", root)).ToDictionary(m => m.Item1, m => m.Item2);
        var pairs = new List<(string Conv, string Norm)>();
        foreach (var (name, module) in modules)
        {
            string prefix = name.Length == 0 ? "" : name + ".";
            if (module.GetType() == typeof(Sequential))
            {
                var children = module.named_children().ToList();
                for (int i = 0; i + 1 < children.Count; i++)
                {
                    if (children[i].module is Conv2d && children[i + 1].module is BatchNorm2d)
                        pairs.Add((prefix + children[i].name, prefix + children[i + 1].name));
                }
            }
            else if (familyPairs.TryGetValue(module.GetType().Name, out var known))
            {
                pairs.AddRange(known.Where(p => modules.ContainsKey(prefix + p.Conv) && modules.ContainsKey(prefix + p.Norm))
                    .Select(p => (prefix + p.Conv, prefix + p.Norm)));
            }
        }

        int folded = 0;
        using var noGrad = no_grad();
        foreach (var (convName, normName) in pairs.Where(p => within is null || within(p.Conv) && within(p.Norm)))
        {
            if (modules[convName] is not Conv2d conv || modules[normName] is not BatchNorm2d norm || !Fold(conv, norm)) continue;
            ModuleSurgery.Replace(root, normName, nn.Identity());
            folded++;
        }
        foreach (var conv in root.named_modules().Where(m => within is null || within(m.name)).Select(m => m.module).OfType<Conv2d>())
        {
            // NHWC storage behind the same NCHW shape: PyTorch takes the memory format from the strides.
            using var channelsLast = conv.weight.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2);
            conv.weight.set_(channelsLast);
        }
        return folded;
    }

    /// <summary>w·γ/σ and (b − μ)·γ/σ + β, σ = √(var + ε); false when the norm has no running statistics to fold.</summary>
    private static bool Fold(Conv2d conv, BatchNorm2d norm)
    {
        if (norm.running_mean is null || norm.running_var is null) return false;
        using var scope = NewDisposeScope();
        var scale = (norm.running_var + norm.eps).rsqrt();
        if (norm.weight is not null) scale = scale * norm.weight;
        var bias = conv.bias is null ? -norm.running_mean * scale : (conv.bias - norm.running_mean) * scale;
        if (norm.bias is not null) bias = bias + norm.bias;
        var weight = conv.weight * scale.reshape(-1, 1, 1, 1);
        conv.weight = new Parameter(weight.DetachFromDisposeScope(), requires_grad: false);
        conv.bias = new Parameter(bias.DetachFromDisposeScope(), requires_grad: false);
        return true;
    }
}
