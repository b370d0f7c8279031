using System.Text.Json.Serialization;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace FineTune.Core.Training;

[JsonConverter(typeof(OptimizerKindJson))]
public enum OptimizerKind { Sgd, Adam, AdamW }

/// <summary>An optimizer: its name in job specs and how it is built for the trainable parameters.</summary>
public sealed record OptimizerChoice(OptimizerKind Value, string Name, string Description,
    Func<IReadOnlyList<Parameter>, TrainingOptions, OptimizerHelper> Create) : Choice<OptimizerKind>(Value, Name, Description);

/// <summary>The optimizers a job can choose: adding one is a member of <see cref="OptimizerKind"/> and its entry here.</summary>
public static class Optimizers
{
    public static readonly ChoiceTable<OptimizerKind, OptimizerChoice> Choices = new(
        new(OptimizerKind.Sgd, "sgd", "momentum, optionally Nesterov: the seed recipe",
            (parameters, o) => optim.SGD(parameters, o.LearningRate, o.Momentum, weight_decay: o.WeightDecay, nesterov: o.Nesterov)),
        new(OptimizerKind.Adam, "adam", "Adam, weight decay added to the gradient",
            (parameters, o) => optim.Adam(parameters, o.LearningRate, weight_decay: o.WeightDecay)),
        new(OptimizerKind.AdamW, "adamw", "Adam with decoupled weight decay",
            (parameters, o) => optim.AdamW(parameters, o.LearningRate, weight_decay: o.WeightDecay)));

    public static OptimizerHelper Create(IReadOnlyList<Parameter> parameters, TrainingOptions options) =>
        Choices[options.Optimizer].Create(parameters, options);
}

public sealed class OptimizerKindJson() : ChoiceJsonConverter<OptimizerKind, OptimizerChoice>(Optimizers.Choices);
