using System.Reflection;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace FineTune.Core.Models;

/// <summary>
/// Swaps a submodule of a built model in place. TorchSharp 0.107 cannot do this publicly: register_module
/// throws for an existing name, and re-registering an index of a Sequential is accepted while forward still
/// calls the old module. Forward reads a private field (or a Sequential's private list), state_dict reads
/// the submodule registry, so both are replaced together. Pinned to TorchSharp 0.107; tests cover it.
/// </summary>
internal static class ModuleSurgery
{
    private const BindingFlags Private = BindingFlags.NonPublic | BindingFlags.Instance;

    private static readonly FieldInfo Registry = typeof(nn.Module).GetField("_internal_submodules", Private)
        ?? throw new MissingFieldException(nameof(nn.Module), "_internal_submodules");
    private static readonly FieldInfo SequentialModules = typeof(Sequential).GetField("_modules", Private)
        ?? throw new MissingFieldException(nameof(Sequential), "_modules");
    private static readonly FieldInfo SequentialNames = typeof(Sequential).GetField("_names", Private)
        ?? throw new MissingFieldException(nameof(Sequential), "_names");

    public static nn.Module Find(nn.Module root, string path) =>
        root.named_modules().FirstOrDefault(m => m.name == path).module
        ?? throw new ArgumentException($"the model has no module '{path}'", nameof(path));

    /// <summary>Puts <paramref name="replacement"/> at <paramref name="path"/> and disposes what was there.</summary>
    public static void Replace(nn.Module root, string path, nn.Module<Tensor, Tensor> replacement)
    {
        int dot = path.LastIndexOf('.');
        var parent = dot < 0 ? root : Find(root, path[..dot]);
        string name = path[(dot + 1)..];
        var old = Find(root, path);

        if (parent is Sequential sequential)
        {
            var names = (List<string>)SequentialNames.GetValue(sequential)!;
            var modules = (List<nn.IModule<Tensor, Tensor>>)SequentialModules.GetValue(sequential)!;
            modules[names.IndexOf(name)] = replacement;
        }
        else
        {
            var field = FindField(parent.GetType(), name)
                ?? throw new InvalidOperationException($"{parent.GetType().Name} keeps '{name}' in no field");
            field.SetValue(parent, replacement);
        }
        var registry = (TorchSharp.Utils.OrderedDict<string, nn.Module>)Registry.GetValue(parent)!;
        registry[name] = replacement;
        old.Dispose();
    }

    private static FieldInfo? FindField(Type? type, string name)
    {
        for (; type is not null; type = type.BaseType)
        {
            var field = type.GetField(name, Private | BindingFlags.Public | BindingFlags.DeclaredOnly);
            if (field is not null) return field;
        }
        return null;
    }
}
