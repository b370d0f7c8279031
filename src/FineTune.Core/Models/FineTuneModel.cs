using FineTune.Core.Runtime;
using FineTune.Core.Weights;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace FineTune.Core.Models;

/// <summary>What <see cref="FineTuneModel.Freeze"/> left trainable.</summary>
public sealed record FreezeReport(
    string Mode,
    IReadOnlyList<string> TrainableStages,
    long TrainableParameters,
    long TotalParameters);

/// <summary>
/// A family's network with its classifier head sized to the dataset's classes, and the freezing rules of
/// the fine-tune. Parameter names stay torchvision's, so the weights load in PyTorch as they are.
/// </summary>
public sealed class FineTuneModel : IDisposable
{
    private FineTuneModel(ModelFamily family, nn.Module<Tensor, Tensor> module, int numClasses)
    {
        Family = family;
        Module = module;
        NumClasses = numClasses;
        Stages = family.Stages?.Invoke(module) ?? ComputeStages(family, module);
        Boundary = family.HeadPath;
        _forwardSteps = ModelRegistry.ArchitectureOf(family).ForwardSteps.GetValueOrDefault(module.GetType().Name);
    }

    private readonly ForwardStep[]? _forwardSteps;

    public ModelFamily Family { get; }
    public nn.Module<Tensor, Tensor> Module { get; }
    public int NumClasses { get; }

    /// <summary>Top-level prefixes of the backbone, input to output; <c>last:N</c> counts from the end.</summary>
    public IReadOnlyList<string> Stages { get; }

    /// <summary>
    /// Where the frozen part of the network ends (<see cref="Freeze"/>): the first stage that trains, the head when only it
    /// does, null when nothing is frozen. What reaches it is the same every epoch without augmentation (<see cref="FeatureCache"/>).
    /// </summary>
    public string? Boundary { get; private set; }

    /// <summary>Whether only the head trains: <see cref="Boundary"/> is the head, and what reaches it is the backbone's features.</summary>
    public bool BoundaryIsHead => Boundary == Family.HeadPath;

    /// <summary>Whether the network can run from <see cref="Boundary"/> on (<see cref="FromBoundary"/>): always from the head; from a stage where the family declares its forward's steps.</summary>
    public bool CanStartAtBoundary => BoundaryIsHead || Boundary is { } stage && _forwardSteps is { } steps && StageForward.CanSplitAt(steps, stage);

    /// <summary>The paths of the modules that run before <see cref="Boundary"/>; only where <see cref="CanStartAtBoundary"/> and the boundary is a stage.</summary>
    internal IReadOnlyList<string> PathsBeforeBoundary => StageForward.PathsBefore(Module, _forwardSteps!, Boundary!);

    /// <summary>The logits from what <see cref="Boundary"/> receives (<see cref="CaptureFeatures"/>): the head alone, or the stages that train and the head.</summary>
    public Tensor FromBoundary(Tensor input) => BoundaryIsHead
        ? HeadLogits(input)
        : StageForward.From(Module, _forwardSteps ?? throw new InvalidOperationException($"{Family.Name} cannot start at {Boundary}"), Boundary!, input);

    /// <summary>
    /// Builds the family and swaps its head (then any auxiliary heads) for a fresh Linear(in, <paramref name="numClasses"/>)
    /// (a fresh 1×1 Conv2d where the family's head is one: SqueezeNet's).
    /// The backbone is initialised after <c>manual_seed(seed)</c> and the head after a second
    /// <c>manual_seed(seed)</c>, which is how the PyTorch reference reproduces both.
    /// </summary>
    /// <param name="headDropout">
    /// Dropout on the head's input while training. Applied by a hook rather than a Dropout module, so the
    /// head stays a plain layer under torchvision's name and published weights load in PyTorch unchanged.
    /// </param>
    public static FineTuneModel Create(ModelFamily family, int numClasses, long seed, double headDropout = 0)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(numClasses, 1);
        if (headDropout is < 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(headDropout), headDropout, "dropout must be in [0, 1)");
        lock (TorchRandom.Gate) return CreateSeeded(family, numClasses, seed, headDropout);
    }

    private static FineTuneModel CreateSeeded(ModelFamily family, int numClasses, long seed, double headDropout)
    {
        manual_seed(seed);
        var module = family.CreateImageNetLayout();
        var oldHead = ModuleSurgery.Find(module, family.HeadPath);
        manual_seed(seed);
        var head = FreshHead(oldHead, numClasses, $"{family.Name}'s {family.HeadPath}");
        if (headDropout > 0)
            head.register_forward_pre_hook((self, input) => self.training ? nn.functional.dropout(input, headDropout, training: true) : input);
        ModuleSurgery.Replace(module, family.HeadPath, head);
        foreach (var path in family.AuxiliaryHeadPaths)
            ModuleSurgery.Replace(module, path, FreshHead(ModuleSurgery.Find(module, path), numClasses, $"{family.Name}'s {path}"));
        return new FineTuneModel(family, module, numClasses);
    }

    /// <summary>
    /// A head like <paramref name="old"/> for <paramref name="numClasses"/> classes: a Linear, or a 1×1 Conv2d (SqueezeNet's),
    /// with a bias where the family's own has one (MaxViT's has none), so published weights load into torchvision strictly.
    /// </summary>
    private static nn.Module<Tensor, Tensor> FreshHead(nn.Module old, int numClasses, string where) => old switch
    {
        Linear linear => nn.Linear(linear.weight!.shape[1], numClasses, hasBias: linear.bias is not null),
        Conv2d conv when conv.weight!.shape is [_, _, 1, 1] && conv.groups == 1 =>
            nn.Conv2d(conv.weight.shape[1], numClasses, 1, bias: conv.bias is not null),
        _ => throw new InvalidOperationException($"{where} is neither a Linear layer nor a 1×1 convolution"),
    };

    /// <summary>A published model: the family's layout holding the whole state dict in <paramref name="weightsPath"/>, in eval mode.</summary>
    /// <param name="weightsPath">any format <see cref="StateDictFile"/> reads</param>
    public static FineTuneModel Load(ModelFamily family, int numClasses, string weightsPath)
    {
        var model = Create(family, numClasses, seed: 0);
        try
        {
            PretrainedWeights.LoadAll(model, weightsPath);
            model.EvalMode();
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>The classifier head: a Linear, or SqueezeNet's 1×1 Conv2d.</summary>
    public nn.Module<Tensor, Tensor> Head => (nn.Module<Tensor, Tensor>)ModuleSurgery.Find(Module, Family.HeadPath);

    /// <summary>The logits from the head's input (<see cref="Features"/>): the head and whatever the forward applies after it (<see cref="ModelFamily.AfterHead"/>).</summary>
    public Tensor HeadLogits(Tensor features)
    {
        var output = Head.call(features);
        return Family.AfterHead is { } after ? after(output) : output;
    }

    /// <summary>
    /// Gives the head and any auxiliary heads the values <see cref="Create"/> gives them under <paramref name="seed"/>
    /// (the same draws in the same order), so that a model built once can serve another run's work on cached features.
    /// </summary>
    public void ResetHeads(long seed)
    {
        lock (TorchRandom.Gate)
        {
            using var scope = NewDisposeScope();
            manual_seed(seed);
            foreach (var path in (string[])[Family.HeadPath, .. Family.AuxiliaryHeadPaths])
            {
                var head = ModuleSurgery.Find(Module, path);
                using var fresh = FreshHead(head, NumClasses, path);
                var values = fresh.named_parameters().ToDictionary(p => p.name, p => p.parameter);
                using (no_grad())
                {
                    foreach (var (name, parameter) in head.named_parameters()) parameter.copy_(values[name]);
                }
            }
        }
    }

    public FreezeReport Freeze(FreezeMode mode)
    {
        if (_frozenPartFused && mode != _frozenWith)
            throw new InvalidOperationException($"{Family.Name}'s frozen part is fused for {_frozenWith}: build the model again to freeze it as {mode}");
        _frozenWith = mode;
        var trainableStages = Stages.Skip(Math.Max(0, Stages.Count - mode.TrainableStages)).ToList();
        long trainable = 0, total = 0;
        foreach (var (name, parameter) in Module.named_parameters())
        {
            // Under full, parameters outside every stage train too (ViT's class_token sits on the model itself).
            bool train = mode == FreezeMode.Full || Family.IsHeadKey(name) || trainableStages.Any(stage => name.StartsWith(stage + ".", StringComparison.Ordinal));
            parameter.requires_grad = train;
            total += parameter.numel();
            if (train) trainable += parameter.numel();
        }
        Boundary = trainableStages.Count == 0 ? Family.HeadPath
            : mode == FreezeMode.Full || trainableStages.Count == Stages.Count ? null
            : trainableStages[0];
        return new FreezeReport(mode.ToString(), trainableStages, trainable, total);
    }

    /// <summary>
    /// Training mode, except for modules whose parameters are all frozen: they stay in eval mode, with everything in
    /// them, so batch norms keep their pretrained running statistics and a frozen block's dropout and stochastic depth
    /// (EfficientNet, ConvNeXt, Swin, MaxViT) stay off: a frozen part computes what the feature cache computed.
    /// </summary>
    public void TrainMode()
    {
        Module.train();
        foreach (var module in Module.modules())
        {
            var parameters = module.parameters().ToList();
            if (parameters.Count > 0 && !parameters.Any(p => p.requires_grad))
                module.eval();
        }
    }

    public void EvalMode() => Module.eval();

    /// <summary>
    /// Eval mode, with batch norms folded into convolutions and weights channels-last (<see cref="InferenceFusion"/>):
    /// the same outputs to float rounding, faster. Only for a model that serves inference and is then disposed, since
    /// its state dict no longer has the family's layout.
    /// </summary>
    /// <returns>how many batch norms were folded</returns>
    public int FuseForInference()
    {
        EvalMode();
        return InferenceFusion.Fuse(Module, ModelRegistry.ArchitectureOf(Family).FusionPairs);
    }

    /// <summary>
    /// For training on images: the frozen part before <see cref="Boundary"/> (in eval mode while training) gets its batch
    /// norms folded and its weights laid out channels-last, as the feature pass runs it (<see cref="InferenceFusion"/>), and
    /// <see cref="Forward"/> runs it without recording gradients, handing the boundary a contiguous tensor: what trains
    /// computes as before, and in the layout its checkpoint stores. Its state dict no longer has the family's layout in that
    /// part, so such a model only trains and scores (a checkpoint holds only what trains). False, and nothing changed, where
    /// the forward cannot be split at the boundary or nothing is frozen; calling it again changes nothing more.
    /// </summary>
    public bool FuseFrozenPart()
    {
        if (_frozenPartFused) return true;
        if (Boundary is not { } boundary || _forwardSteps is not { } steps || !StageForward.CanSplitAt(steps, boundary)) return false;
        var before = StageForward.PathsBefore(Module, steps, boundary);
        var modules = Module.named_modules().ToDictionary(m => m.name, m => m.module);
        InferenceFusion.Fuse(Module, ModelRegistry.ArchitectureOf(Family).FusionPairs, path =>
            before.Any(p => path == p || path.StartsWith(p + ".", StringComparison.Ordinal)) && !modules[path].parameters().Any(p => p.requires_grad));
        _frozenPartFused = true;
        return true;
    }

    private bool _frozenPartFused;
    private FreezeMode? _frozenWith;

    /// <summary>Where the model's parameters are; inputs are moved there.</summary>
    public Device Device => Module.parameters().First().device;

    public Tensor Forward(Tensor batch)
    {
        if (!_frozenPartFused) return Module.call(batch.to(Device));
        Tensor boundaryInput;
        using (no_grad())
            boundaryInput = StageForward.Until(Module, _forwardSteps!, Boundary!, batch.to(Device)).contiguous();
        return FromBoundary(boundaryInput);
    }

    /// <summary>What <see cref="Boundary"/> receives for <paramref name="batch"/>: the backbone's output when only the head trains.</summary>
    public Tensor Features(Tensor batch)
    {
        using var capture = CaptureFeatures();
        return capture.Of(batch);
    }

    /// <summary>
    /// What <see cref="Boundary"/> receives while the capture lasts, from any number of threads at once (<see cref="FeatureCapture.Of"/>):
    /// hooks must not be added or removed while another thread's forward pass runs them.
    /// </summary>
    public FeatureCapture CaptureFeatures() => new(this);

    /// <summary>
    /// What <see cref="Boundary"/> receives: at the head, one hook on its input for every thread, each thread reading what
    /// its own forward pass gave; at a stage, the forward's steps run up to it.
    /// </summary>
    public sealed class FeatureCapture : IDisposable
    {
        [ThreadStatic] private static Tensor? t_captured;
        private readonly FineTuneModel _model;
        private readonly Action _removeHook;

        internal FeatureCapture(FineTuneModel model)
        {
            _model = model;
            if (!model.BoundaryIsHead)
            {
                _removeHook = () => { };
                return;
            }
            var hook = model.Head.register_forward_pre_hook((_, input) =>
            {
                t_captured?.Dispose();
                t_captured = input.alias().DetachFromDisposeScope();
                return input;
            });
            _removeHook = hook.remove;
        }

        public Tensor Of(Tensor batch)
        {
            if (!_model.BoundaryIsHead)
            {
                using var scope = NewDisposeScope();
                return StageForward.Until(_model.Module, _model._forwardSteps!, _model.Boundary!, batch.to(_model.Device)).MoveToOuterDisposeScope();
            }
            try
            {
                using (NewDisposeScope())
                    _model.Module.call(batch.to(_model.Device));
                // Re-created here so that the result belongs to the caller's dispose scope, like any other op's.
                return t_captured!.alias();
            }
            finally
            {
                t_captured?.Dispose();
                t_captured = null;
            }
        }

        public void Dispose() => _removeHook();
    }

    public void Dispose() => Module.Dispose();

    private static List<string> ComputeStages(ModelFamily family, nn.Module module)
    {
        var stages = new List<string>();
        foreach (var (name, child) in module.named_children())
        {
            if (name == "features")
            {
                stages.AddRange(child.named_children().Where(c => c.module.parameters().Any()).Select(c => $"features.{c.name}"));
                continue;
            }
            bool hasBackboneParameters = child.named_parameters().Any(p => !family.IsHeadKey($"{name}.{p.name}"));
            if (hasBackboneParameters) stages.Add(name);
        }
        return stages;
    }
}
