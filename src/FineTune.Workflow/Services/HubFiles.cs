using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using FineTune.Core.Data;
using FineTune.Core.Export;
using FineTune.Core.Models;
using FineTune.Storage;

namespace FineTune.Workflow.Services;

/// <summary>
/// What makes a published folder usable outside this service: <c>config.json</c> (timm's layout: architecture,
/// classes, label names, input size, mean/std, crop_pct, interpolation) and a <c>README.md</c> with model-hub
/// metadata and a PyTorch script for its family, next to <c>model.safetensors</c> (and an ONNX Runtime script when
/// <c>model.onnx</c> is published too).
/// </summary>
public static class HubFiles
{
    /// <summary>The tensor of <see cref="RunLayout.MeanImageFile"/>: BGR, 0–255, channels × crop × crop.</summary>
    public const string MeanImageTensor = "mean_image";

    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    public static byte[] Config(ModelCard card)
    {
        var family = ModelRegistry.Get(card.Model).For(card.Preprocessing);
        var p = card.Preprocessing;
        var pretrained = new JsonObject
        {
            ["input_size"] = new JsonArray(3, p.CropSize, p.CropSize),
            ["interpolation"] = Interpolations.Choices[p.Interpolation].Name,
            ["crop_pct"] = p.CropPct,
            // center: torchvision's resize + centre crop; pad: the long side to the input size, centred on white.
            ["crop_mode"] = p.Resize == ResizeMode.Pad ? "pad" : "center",
            ["channel_order"] = JsonSerializer.SerializeToNode(p.ChannelOrder),
            ["pixel_scale"] = p.Scale,
            ["mean"] = new JsonArray([.. p.Mean.Select(m => JsonValue.Create(m))]),
            ["std"] = new JsonArray([.. p.Std.Select(s => JsonValue.Create(s))]),
            ["classifier"] = family.HeadPath,
        };
        if (p.SubtractsMeanImage) pretrained["mean_image"] = RunLayout.MeanImageFile;
        var config = new JsonObject
        {
            ["architecture"] = card.Model,
            ["library"] = "torchvision",
            ["model_constructor"] = family.PyTorchConstructor(card.Classes.Count),
            ["num_classes"] = card.Classes.Count,
            ["label_names"] = new JsonArray([.. card.Classes.Select(c => JsonValue.Create(c))]),
            ["pretrained_cfg"] = pretrained,
        };
        return Encoding.UTF8.GetBytes(config.ToJsonString(Indented) + "\n");
    }

    /// <param name="onnx">whether <see cref="RunLayout.OnnxFile"/> is published beside the weights</param>
    public static byte[] Readme(ModelCard card, bool onnx)
    {
        var family = ModelRegistry.Get(card.Model).For(card.Preprocessing);
        var metrics = card.Metrics;
        var text = new StringBuilder();
        text.AppendLine("---");
        text.AppendLine("library_name: pytorch");
        text.AppendLine("pipeline_tag: image-classification");
        text.AppendLine("tags:");
        foreach (var tag in new[] { "image-classification", "torchvision", "finetune-functions", card.Model }) text.AppendLine(CultureInfo.InvariantCulture, $"- {tag}");
        if (BaseModel(card.Weights?.Pretrained.Source) is { } baseModel) text.AppendLine(CultureInfo.InvariantCulture, $"base_model: {baseModel}");
        if (metrics is not null)
        {
            text.AppendLine("metrics:");
            text.AppendLine("- accuracy");
            text.AppendLine("model-index:");
            text.AppendLine(CultureInfo.InvariantCulture, $"- name: {card.JobId}");
            text.AppendLine("  results:");
            text.AppendLine("  - task:");
            text.AppendLine("      type: image-classification");
            text.AppendLine("    dataset:");
            text.AppendLine(CultureInfo.InvariantCulture, $"      name: {Yaml(Path.GetFileName(card.Dataset?.Location.TrimEnd('/')) ?? "dataset")}");
            text.AppendLine("      type: imagefolder");
            text.AppendLine(CultureInfo.InvariantCulture, $"      split: {metrics.Split}");
            text.AppendLine("    metrics:");
            text.AppendLine("    - type: accuracy");
            text.AppendLine(CultureInfo.InvariantCulture, $"      value: {metrics.Top1Accuracy.ToString("0.####", CultureInfo.InvariantCulture)}");
            text.AppendLine(CultureInfo.InvariantCulture, $"      name: top-1 accuracy");
        }
        text.AppendLine("---");
        text.AppendLine();
        text.AppendLine(CultureInfo.InvariantCulture, $"# {card.JobId}");
        text.AppendLine();
        text.AppendLine(CultureInfo.InvariantCulture, $"`{card.Model}` fine-tuned by FineTune Functions to tell {card.Classes.Count} classes apart: {string.Join(", ", card.Classes.Select(c => $"`{c}`"))}.");
        if (metrics is not null)
            text.AppendLine(CultureInfo.InvariantCulture, $"Top-1 accuracy {metrics.Top1Accuracy:P1} on {metrics.Images} {metrics.Split} images; best epoch {card.BestEpoch} of {card.History.Count}.");
        if (metrics?.ConvexHead is { } convex) text.AppendLine(CultureInfo.InvariantCulture, $"Head: {convex.Describe()}.");
        if (card.Weights is { } weights) text.AppendLine(CultureInfo.InvariantCulture, $"Pretrained weights: {weights.Pretrained.Source} (SHA-256 {weights.Pretrained.Sha256}).");
        text.AppendLine();
        text.AppendLine("## Use it in PyTorch");
        text.AppendLine();
        text.AppendLine(CultureInfo.InvariantCulture, $"Needs torch, torchvision, Pillow and safetensors. Save this as `predict.py` in this folder and run `python predict.py photo.jpg`: it prints each image's class probabilities.");
        if (card.Preprocessing.SubtractsMeanImage)
            text.AppendLine(CultureInfo.InvariantCulture, $"This family's input is BGR pixels (0–255) minus the mean image in `{RunLayout.MeanImageFile}`, which the script subtracts.");
        text.AppendLine();
        text.AppendLine("```python");
        text.Append(Script(card, family));
        text.AppendLine("```");
        text.AppendLine();
        if (onnx)
        {
            int size = card.Preprocessing.CropSize;
            text.AppendLine("## Use it with ONNX Runtime");
            text.AppendLine();
            text.AppendLine(CultureInfo.InvariantCulture, $"`{RunLayout.OnnxFile}` is the same model as an ONNX graph (opset {OnnxExporter.Opset}): input `{OnnxExporter.InputName}`, float32 [batch, 3, {size}, {size}]; output `{OnnxExporter.OutputName}`, [batch, {card.Classes.Count}]. Its metadata holds the class names and the preprocessing. When its weights pass 1.75 GiB (protobuf stops at 2 GiB) they are in `{RunLayout.OnnxDataFile}` beside it (ONNX external data: keep the two files together).");
            text.AppendLine(CultureInfo.InvariantCulture, $"Needs onnxruntime, numpy and Pillow, no PyTorch. Save this as `predict_onnx.py` in this folder and run `python predict_onnx.py photo.jpg`: it prints what `predict.py` prints.");
            if (card.Preprocessing.SubtractsMeanImage)
                text.AppendLine("The graph subtracts the mean image itself: the script feeds it plain BGR pixels.");
            text.AppendLine();
            text.AppendLine("```python");
            text.Append(OnnxScript(card));
            text.AppendLine("```");
            text.AppendLine();
        }
        text.AppendLine(CultureInfo.InvariantCulture, $"`{RunLayout.ModelCardFile}` holds the rest: the training history, the hyper-parameters, the dataset's and the weights' hashes.");
        return Encoding.UTF8.GetBytes(text.ToString());
    }

    /// <summary>The README's script: the family built by its torchvision constructor, the weights loaded strictly, the run's preprocessing.</summary>
    public static string Script(ModelCard card, ModelFamily family)
    {
        var p = card.Preprocessing;
        string fit = p.Resize == ResizeMode.Pad
            ? $"    lambda image: pad(image, {p.CropSize}),"
            : $"    transforms.Resize({p.ResizeSize}{(p.Interpolation == Interpolation.Bilinear ? "" : $", interpolation=transforms.InterpolationMode.{PilFilter(p)}")}),\n    transforms.CenterCrop({p.CropSize}),";
        string normalise = p.SubtractsMeanImage
            ? $"    transforms.PILToTensor(),\n    lambda x: x.float()[[2, 1, 0]] - mean_image,"
            : $"    transforms.ToTensor(),\n    transforms.Normalize([{Floats(p.Mean)}], [{Floats(p.Std)}]),";
        var script = new StringBuilder();
        script.Append(CultureInfo.InvariantCulture, $$"""
            {{(family.StateDictVersion is null ? "" : "import collections\n")}}import json
            import sys

            import numpy as np
            import torch
            import torchvision
            from PIL import Image, ImageOps
            from safetensors.torch import load_file
            from torchvision import transforms

            labels = json.load(open("{{RunLayout.HubConfigFile}}"))["label_names"]
            model = {{family.PyTorchConstructor(card.Classes.Count)}}
            {{LoadStateDict(family)}}
            model.eval()

            """);
        if (p.SubtractsMeanImage) script.Append(CultureInfo.InvariantCulture, $"mean_image = load_file(\"{RunLayout.MeanImageFile}\")[\"{MeanImageTensor}\"]\n");
        script.Append(OpenRgb);
        if (p.Resize == ResizeMode.Pad) script.Append(Pad(p));
        script.Append(CultureInfo.InvariantCulture, $$"""

            preprocess = transforms.Compose([
            {{fit}}
            {{normalise}}
            ])

            with torch.no_grad():
                for path in sys.argv[1:]:
                    probabilities = torch.softmax(model(preprocess(open_rgb(path)).unsqueeze(0)), dim=1)[0]
                    print(json.dumps({"image": path, "probabilities": dict(zip(labels, probabilities.tolist()))}))

            """);
        return script.ToString();
    }

    /// <summary>The script's strict load of the published weights into <c>model</c>, with the version its class requires stated.</summary>
    private static string LoadStateDict(ModelFamily family) => family.StateDictVersion is not { } version
        ? $"model.load_state_dict(load_file(\"{RunLayout.SafetensorsFile}\"))"
        : $$"""
            state_dict = collections.OrderedDict(load_file("{{RunLayout.SafetensorsFile}}"))
            # torchvision's {{family.Architecture}} loads only a state dict that states its version.
            state_dict._metadata = {{VersionMetadata(version)}}
            model.load_state_dict(state_dict)
            """;

    /// <summary>A state dict's <c>_metadata</c> stating the model's version, as torch's <c>state_dict()</c> writes it.</summary>
    private static string VersionMetadata(int version) => "{\"\": {\"version\": " + version.ToString(CultureInfo.InvariantCulture) + "}}";

    /// <summary>
    /// The README's ONNX Runtime script: numpy and Pillow doing what torchvision does in <see cref="Script"/> (the graph
    /// subtracts a mean image itself), the input and output named as <see cref="OnnxExporter"/> names them.
    /// </summary>
    public static string OnnxScript(ModelCard card)
    {
        var p = card.Preprocessing;
        var script = new StringBuilder();
        script.Append(CultureInfo.InvariantCulture, $$"""
            import json
            import sys

            import numpy as np
            import onnxruntime
            from PIL import Image, ImageOps

            labels = json.load(open("{{RunLayout.HubConfigFile}}"))["label_names"]
            session = onnxruntime.InferenceSession("{{RunLayout.OnnxFile}}")
            mean = np.array([{{Floats(p.Mean)}}], dtype=np.float32)
            std = np.array([{{Floats(p.Std)}}], dtype=np.float32)

            """);
        script.Append(OpenRgb);
        if (p.Resize == ResizeMode.Pad) script.Append(Pad(p));
        else script.Append(CultureInfo.InvariantCulture, $$"""


            def fit(image):
                # torchvision's Resize({{p.ResizeSize}}) then CenterCrop({{p.CropSize}}).
                w, h = image.size
                short, long = min(w, h), max(w, h)
                resized = int({{p.ResizeSize}} * long / short)
                nw, nh = ({{p.ResizeSize}}, resized) if w <= h else (resized, {{p.ResizeSize}})
                image = image.resize((nw, nh), Image.{{PilFilter(p)}})
                left, top = int(round((nw - {{p.CropSize}}) / 2.0)), int(round((nh - {{p.CropSize}}) / 2.0))
                return image.crop((left, top, left + {{p.CropSize}}, top + {{p.CropSize}}))

            """);
        string fit = p.Resize == ResizeMode.Pad ? $"pad(open_rgb(path), {p.CropSize})" : "fit(open_rgb(path))";
        string channels = p.ChannelOrder == ChannelOrder.Bgr ? "[..., ::-1]" : "";
        script.Append(CultureInfo.InvariantCulture, $$"""


            for path in sys.argv[1:]:
                pixels = np.asarray({{fit}}, dtype=np.float32){{channels}}
                x = ((pixels * np.float32({{p.Scale.ToString("R", CultureInfo.InvariantCulture)}}) - mean) / std).transpose(2, 0, 1)[np.newaxis]
                logits = session.run(["{{OnnxExporter.OutputName}}"], {"{{OnnxExporter.InputName}}": np.ascontiguousarray(x)})[0][0].astype(np.float64)
                exp = np.exp(logits - logits.max())
                probabilities = exp / exp.sum()
                print(json.dumps({"image": path, "probabilities": dict(zip(labels, probabilities.tolist()))}))

            """);
        return script.ToString();
    }

    /// <summary>Both scripts read images as training does.</summary>
    private const string OpenRgb = """


        def open_rgb(path):
            # As in training: the first frame, turned upright, transparent pixels on white.
            image = ImageOps.exif_transpose(Image.open(path))
            if "A" not in image.getbands() and "transparency" not in image.info:
                return image.convert("RGB")
            rgba = np.asarray(image.convert("RGBA"), dtype=np.int64)
            alpha = rgba[..., 3:4]
            return Image.fromarray(((rgba[..., :3] * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8))

        """;

    private static string Pad(Preprocessing p) => $$"""


        def pad(image, size):
            # The long side to size, centred on white: nothing is cut off.
            w, h = image.size
            fitted = max(1, min(w, h) * size // max(w, h))
            nw, nh = (size, fitted) if w >= h else (fitted, size)
            canvas = Image.new("RGB", (size, size), (255, 255, 255))
            canvas.paste(image.resize((nw, nh), Image.{{PilFilter(p)}}), ((size - nw) // 2, (size - nh) // 2))
            return canvas

        """;

    /// <summary>A Hugging Face hub repository the weights came from (https://huggingface.co/OWNER/NAME/…), which the hub links as the base model.</summary>
    private static string? BaseModel(string? source) =>
        Uri.TryCreate(source, UriKind.Absolute, out var uri) && uri.Host == "huggingface.co" && uri.Segments.Length >= 3
            ? $"{uri.Segments[1].TrimEnd('/')}/{uri.Segments[2].TrimEnd('/')}"
            : null;

    /// <summary>Pillow's name of the weights' filter (BILINEAR, BICUBIC, NEAREST), as torchvision's InterpolationMode names it too.</summary>
    private static string PilFilter(Preprocessing p) => Interpolations.Choices[p.Interpolation].Name.ToUpperInvariant();

    private static string Floats(IEnumerable<float> values) => string.Join(", ", values.Select(v => v.ToString("R", CultureInfo.InvariantCulture)));

    /// <summary>A YAML scalar: quoted, since a dataset's name may hold anything.</summary>
    private static string Yaml(string value) => JsonSerializer.Serialize(value);
}
