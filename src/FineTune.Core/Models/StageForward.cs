using static TorchSharp.torch;

namespace FineTune.Core.Models;

/// <summary>
/// One step of a module type's top-level forward (<see cref="ModelArchitecture.ForwardSteps"/>): a child module by
/// name, or an operation without parameters (a flatten, a pooling the forward calls as a function).
/// </summary>
internal sealed record ForwardStep(string? Child, Func<Tensor, Tensor>? Apply)
{
    public static implicit operator ForwardStep(string child) => new(child, null);

    public static ForwardStep Op(Func<Tensor, Tensor> apply) => new(null, apply);

    public static ForwardStep Flatten { get; } = Op(x => x.flatten(1));
}

/// <summary>
/// A forward split at a stage (<see cref="FineTuneModel.Stages"/>): what comes before it (the frozen part, computed once
/// by the boundary cache) and what comes from it on (what trains). A stage is a step's child or, where the step is a
/// Sequential (<c>features</c>, <c>layers</c>, <c>trunk_output</c>), one of its children by path.
/// </summary>
internal static class StageForward
{
    /// <summary>Whether <paramref name="stage"/> starts a step of <paramref name="steps"/> or a child of one.</summary>
    public static bool CanSplitAt(IReadOnlyList<ForwardStep> steps, string stage) => Find(steps, stage).Index >= 0;

    /// <summary>
    /// The paths of what runs before <paramref name="stage"/>: the steps' children before its step and, within its
    /// Sequential, the children before it.
    /// </summary>
    public static IReadOnlyList<string> PathsBefore(nn.Module module, IReadOnlyList<ForwardStep> steps, string stage)
    {
        var (index, inner) = Locate(steps, stage);
        var paths = steps.Take(index).Where(s => s.Child is not null).Select(s => s.Child!).ToList();
        if (inner is null) return paths;
        string parent = steps[index].Child!;
        var sequential = ChildOf(module, parent);
        while (true)
        {
            var (name, rest) = Split(inner);
            foreach (var (childName, _) in sequential.named_children().TakeWhile(c => c.name != name)) paths.Add($"{parent}.{childName}");
            if (rest is null) return paths;
            sequential = ChildOf(sequential, name);
            parent = $"{parent}.{name}";
            inner = rest;
        }
    }

    /// <summary>The input <paramref name="stage"/> receives when <paramref name="module"/> runs on <paramref name="x"/>.</summary>
    public static Tensor Until(nn.Module module, IReadOnlyList<ForwardStep> steps, string stage, Tensor x)
    {
        var (index, inner) = Locate(steps, stage);
        for (int i = 0; i < index; i++) x = Run(module, steps[i], x);
        return inner is null ? x : Until(ChildOf(module, steps[index].Child!), inner, x);
    }

    /// <summary>The module's output when <paramref name="stage"/> receives <paramref name="x"/>.</summary>
    public static Tensor From(nn.Module module, IReadOnlyList<ForwardStep> steps, string stage, Tensor x)
    {
        var (index, inner) = Locate(steps, stage);
        x = inner is null ? Run(module, steps[index], x) : From(ChildOf(module, steps[index].Child!), inner, x);
        for (int i = index + 1; i < steps.Count; i++) x = Run(module, steps[i], x);
        return x;
    }

    /// <summary>Within a Sequential: its children in order up to <paramref name="path"/> (a child's name, or a path inside one).</summary>
    private static Tensor Until(nn.Module sequential, string path, Tensor x)
    {
        var (name, rest) = Split(path);
        foreach (var (childName, child) in sequential.named_children())
        {
            if (childName == name) return rest is null ? x : Until(child, rest, x);
            x = Call(child, x);
        }
        throw new ArgumentException($"no child '{name}'", nameof(path));
    }

    private static Tensor From(nn.Module sequential, string path, Tensor x)
    {
        var (name, rest) = Split(path);
        bool started = false;
        foreach (var (childName, child) in sequential.named_children())
        {
            if (!started && childName == name)
            {
                started = true;
                x = rest is null ? Call(child, x) : From(child, rest, x);
            }
            else if (started)
            {
                x = Call(child, x);
            }
        }
        return started ? x : throw new ArgumentException($"no child '{name}'", nameof(path));
    }

    private static (int Index, string? Inner) Locate(IReadOnlyList<ForwardStep> steps, string stage)
    {
        var found = Find(steps, stage);
        return found.Index >= 0 ? found : throw new ArgumentException($"no step of the forward starts stage '{stage}'", nameof(stage));
    }

    private static (int Index, string? Inner) Find(IReadOnlyList<ForwardStep> steps, string stage)
    {
        for (int i = 0; i < steps.Count; i++)
        {
            if (steps[i].Child is not { } child) continue;
            if (child == stage) return (i, null);
            if (stage.StartsWith(child + ".", StringComparison.Ordinal)) return (i, stage[(child.Length + 1)..]);
        }
        return (-1, null);
    }

    private static (string Name, string? Remainder) Split(string path)
    {
        int dot = path.IndexOf('.', StringComparison.Ordinal);
        return dot < 0 ? (path, null) : (path[..dot], path[(dot + 1)..]);
    }

    private static Tensor Run(nn.Module module, ForwardStep step, Tensor x) =>
        step.Apply is { } apply ? apply(x) : Call(ChildOf(module, step.Child!), x);

    private static nn.Module ChildOf(nn.Module module, string name) =>
        module.named_children().FirstOrDefault(c => c.name == name).module ?? throw new ArgumentException($"{module.GetType().Name} has no child '{name}'");

    private static Tensor Call(nn.Module module, Tensor x) => ((nn.Module<Tensor, Tensor>)module).call(x);
}
