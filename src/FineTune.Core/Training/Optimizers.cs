using System.Text.Json.Serialization;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace FineTune.Core.Training;

[JsonConverter(typeof(OptimizerKindJson))]
public enum OptimizerKind { Sgd, Adam, AdamW }

/// <summary>
/// An optimizer's step on a stack of members' parameter (dim 0: the member; <see cref="StackedHeads"/>): the arithmetic
/// its lone optimizer applies to each member. <paramref name="moments"/>: its state for this parameter
/// (<see cref="OptimizerChoice.Moments"/> tensors, zero at first); <paramref name="each"/>: a value per member, broadcast
/// over the parameter; <paramref name="rates"/>: each member's learning rate at this step; <paramref name="step"/>: from 1.
/// </summary>
public delegate void StackedStep(Tensor parameter, Tensor gradient, Tensor[] moments, Func<Func<TrainingOptions, int, double>, Tensor> each,
    double[] rates, long step);

/// <summary>
/// An optimizer: its name in job specs, how it is built for the trainable parameters, and its step on stacked heads
/// (a sweep's trials) with the state tensors it keeps per parameter.
/// </summary>
public sealed record OptimizerChoice(OptimizerKind Value, string Name, string Description,
    Func<IReadOnlyList<Parameter>, TrainingOptions, OptimizerHelper> Create, int Moments, StackedStep Stacked) : Choice<OptimizerKind>(Value, Name, Description);

/// <summary>The optimizers a job can choose: adding one is a member of <see cref="OptimizerKind"/> and its entry here.</summary>
public static class Optimizers
{
    // TorchSharp's (and PyTorch's) Adam defaults.
    private const double AdamBeta1 = 0.9, AdamBeta2 = 0.999, AdamEpsilon = 1e-8;

    public static readonly ChoiceTable<OptimizerKind, OptimizerChoice> Choices = new(
        new(OptimizerKind.Sgd, "sgd", "momentum, optionally Nesterov: the seed recipe",
            (parameters, o) => optim.SGD(parameters, o.LearningRate, o.Momentum, weight_decay: o.WeightDecay, nesterov: o.Nesterov),
            Moments: 1, StackedSgd),
        new(OptimizerKind.Adam, "adam", "Adam, weight decay added to the gradient",
            (parameters, o) => optim.Adam(parameters, o.LearningRate, weight_decay: o.WeightDecay),
            Moments: 2, (p, g, moments, each, rates, step) => StackedAdam(p, g.add(p * each((o, _) => o.WeightDecay)), moments, each, rates, step)),
        new(OptimizerKind.AdamW, "adamw", "Adam with decoupled weight decay",
            (parameters, o) => optim.AdamW(parameters, o.LearningRate, weight_decay: o.WeightDecay),
            Moments: 2, (p, g, moments, each, rates, step) =>
            {
                p.mul_(each((o, m) => 1 - rates[m] * o.WeightDecay));
                StackedAdam(p, g, moments, each, rates, step);
            }));

    public static OptimizerHelper Create(IReadOnlyList<Parameter> parameters, TrainingOptions options) =>
        Choices[options.Optimizer].Create(parameters, options);

    /// <summary>SGD's step: one momentum buffer; the first step's buffer is the gradient itself (momentum times zero adds nothing).</summary>
    private static void StackedSgd(Tensor p, Tensor g, Tensor[] moments, Func<Func<TrainingOptions, int, double>, Tensor> each, double[] rates, long step)
    {
        var momentum = each((o, _) => o.Momentum);
        var direction = g.add(p * each((o, _) => o.WeightDecay));
        var buffer = moments[0];
        buffer.mul_(momentum).add_(direction);
        var nesterov = each((o, _) => o.Nesterov ? 1 : 0).ne(0).expand_as(p);
        p.sub_(direction.add(buffer * momentum).where(nesterov, buffer) * each((_, m) => rates[m]));
    }

    /// <summary>Adam's step on a gradient its weight decay is already applied to: first then second moments.</summary>
    private static void StackedAdam(Tensor p, Tensor g, Tensor[] moments, Func<Func<TrainingOptions, int, double>, Tensor> each, double[] rates, long step)
    {
        var (exp, expSquared) = (moments[0], moments[1]);
        // The scalars a lone optimizer computes in double precision are computed so here too, member by member.
        double correction1 = 1 - Math.Pow(AdamBeta1, step), correction2 = 1 - Math.Pow(AdamBeta2, step);
        exp.mul_(AdamBeta1).add_(g, alpha: 1 - AdamBeta1);
        expSquared.mul_(AdamBeta2).addcmul_(g, g, value: 1 - AdamBeta2);
        var denominator = (expSquared.sqrt() / Math.Sqrt(correction2)).add_(AdamEpsilon);
        p.addcdiv_(exp * each((_, m) => -rates[m] / correction1), denominator);
    }
}

public sealed class OptimizerKindJson() : ChoiceJsonConverter<OptimizerKind, OptimizerChoice>(Optimizers.Choices);
