using System.Globalization;
using System.Text.Json;
using Microsoft.AspNetCore.Http;

namespace FineTune.Api;

/// <summary>
/// Predict's JSON body, <c>{"images": [{"name": "a.png", "data": "&lt;base64&gt;"}], "top": 3}</c>, read as it arrives: only the
/// image being read is held (its base64 text, then its bytes, handed on before the next is read), so a body's size never
/// decides the memory it takes. Every malformed or oversized body is a <see cref="BadBodyException"/> naming the field.
/// </summary>
internal static class PredictJsonBody
{
    public const string ImagesField = "images", NameField = "name", DataField = "data", TopField = "top";

    private const int ChunkBytes = 64 * 1024;

    /// <summary>The body's <c>top</c>, when it gives one.</summary>
    public sealed record Result(int? Top);

    /// <summary>
    /// Calls <paramref name="onImage"/> with each image's index, name and bytes in order. More than <paramref name="maxImages"/>
    /// images, an image over <paramref name="maxImageBytes"/> or a body over <paramref name="maxBodyBytes"/> is refused as soon as
    /// it is seen.
    /// </summary>
    public static async Task<Result> ReadAsync(HttpRequest request, int maxImages, long maxImageBytes, long maxBodyBytes,
        Func<int, string, byte[], Task> onImage, CancellationToken cancellationToken)
    {
        if (request.ContentLength > maxBodyBytes)
            throw new BadBodyException(413, MultipartForm.BodyField, $"over the {maxBodyBytes}-byte limit of a request");
        // One image's base64 text, with room for its name and the JSON around it.
        long maxToken = (maxImageBytes + 2) / 3 * 4 + ChunkBytes;
        var parser = new Parser(maxImages, maxImageBytes);
        var buffer = new byte[ChunkBytes];
        {
            int filled = 0;
            long total = 0;
            bool final = false;
            var state = new JsonReaderState(new JsonReaderOptions { MaxDepth = 4 });
            while (true)
            {
                int consumed = parser.Parse(buffer.AsSpan(0, filled), final, ref state);
                foreach (var (index, name, bytes) in parser.TakeImages()) await onImage(index, name, bytes);
                if (final) return new Result(parser.Top);
                Buffer.BlockCopy(buffer, consumed, buffer, 0, filled - consumed);
                filled -= consumed;
                if (filled == buffer.Length)
                {
                    // A token longer than the buffer: grow it, up to one whole image.
                    if (buffer.Length >= maxToken)
                        throw new BadBodyException(413, parser.Field, $"over the {maxImageBytes}-byte limit of an image");
                    // Not pooled: a pool would keep an image-sized array for good once it has lent it.
                    var larger = new byte[(int)Math.Min(maxToken, 2L * buffer.Length)];
                    Buffer.BlockCopy(buffer, 0, larger, 0, filled);
                    buffer = larger;
                }
                int read = await MultipartForm.Guard(async () => await request.Body.ReadAsync(buffer.AsMemory(filled), cancellationToken), parser.Field, cancellationToken);
                total += read;
                if (total > maxBodyBytes)
                    throw new BadBodyException(413, MultipartForm.BodyField, $"over the {maxBodyBytes}-byte limit of a request");
                filled += read;
                final = read == 0;
            }
        }
    }

    /// <summary>Where in the body the reader is, kept between the chunks it arrives in.</summary>
    private enum Place { Start, Root, RootValue, Images, Image, ImageValue, End }

    private sealed class Parser(int maxImages, long maxImageBytes)
    {
        private Place _place = Place.Start;
        private string? _property;
        private string? _name;
        private byte[]? _data;
        private bool _sawImages;
        private readonly List<(int, string, byte[])> _ready = [];

        public int Images { get; private set; }
        public int? Top { get; private set; }

        /// <summary>The field being read, for errors: <c>images[i].data</c>, <c>top</c>, or the body.</summary>
        public string Field => _place switch
        {
            Place.Image or Place.ImageValue => $"{ImagesField}[{Images}]" + (_property is null ? "" : "." + _property),
            Place.Images => $"{ImagesField}[{Images}]",
            Place.RootValue when _property is not null => _property,
            _ => MultipartForm.BodyField,
        };

        public List<(int Index, string Name, byte[] Bytes)> TakeImages()
        {
            var images = _ready.ToList();
            _ready.Clear();
            return images;
        }

        /// <summary>Reads every whole token of <paramref name="chunk"/>; the bytes consumed.</summary>
        public int Parse(ReadOnlySpan<byte> chunk, bool final, ref JsonReaderState state)
        {
            var reader = new Utf8JsonReader(chunk, final, state);
            try
            {
                while (reader.Read()) Token(ref reader);
            }
            catch (JsonException e)
            {
                throw new BadBodyException(400, Field, $"not valid JSON: {e.Message}");
            }
            if (final && _place != Place.End)
                throw new BadBodyException(400, Field, "the JSON body ends early");
            state = reader.CurrentState;
            return (int)reader.BytesConsumed;
        }

        private void Token(ref Utf8JsonReader reader)
        {
            var token = reader.TokenType;
            switch (_place)
            {
                case Place.Start:
                    Expect(token == JsonTokenType.StartObject, "must be a JSON object: {\"images\": [{\"name\": …, \"data\": base64}], \"top\": K}");
                    _place = Place.Root;
                    break;
                case Place.Root when token == JsonTokenType.PropertyName:
                    _property = reader.GetString();
                    if (_property is not (ImagesField or TopField))
                        throw new BadBodyException(400, _property ?? MultipartForm.BodyField, $"unknown field; the body has '{ImagesField}' and '{TopField}'");
                    _place = Place.RootValue;
                    break;
                case Place.Root:
                    if (!_sawImages) throw new BadBodyException(400, ImagesField, "at least one image is required");
                    _place = Place.End;
                    break;
                case Place.RootValue when _property == TopField:
                    Expect(token == JsonTokenType.Number && reader.TryGetInt32(out int top) && top >= 1, "must be a whole number, at least 1");
                    Top = reader.GetInt32();
                    (_place, _property) = (Place.Root, null);
                    break;
                case Place.RootValue:
                    Expect(token == JsonTokenType.StartArray, "must be an array of {\"name\", \"data\"} objects");
                    (_place, _property, _sawImages) = (Place.Images, null, true);
                    break;
                case Place.Images when token == JsonTokenType.EndArray:
                    if (Images == 0) throw new BadBodyException(400, ImagesField, "at least one image is required");
                    _place = Place.Root;
                    break;
                case Place.Images:
                    Expect(token == JsonTokenType.StartObject, "must be an object {\"name\", \"data\"}");
                    if (Images == maxImages) throw new BadBodyException(400, ImagesField, $"at most {maxImages} images per request");
                    (_place, _name, _data) = (Place.Image, null, null);
                    break;
                case Place.Image when token == JsonTokenType.PropertyName:
                    _property = reader.GetString();
                    if (_property is not (NameField or DataField))
                        throw new BadBodyException(400, Field, $"unknown field; an image has '{NameField}' and '{DataField}'");
                    _place = Place.ImageValue;
                    break;
                case Place.Image:
                    _property = DataField;
                    Expect(_data is not null, "is required: the image's bytes in base64");
                    _ready.Add((Images, _name ?? "", _data!));
                    (_place, _property, _data) = (Place.Images, null, null);
                    Images++;
                    break;
                case Place.ImageValue:
                    Expect(token == JsonTokenType.String, "must be a string");
                    if (_property == NameField) _name = reader.GetString();
                    else _data = Base64(ref reader);
                    (_place, _property) = (Place.Image, null);
                    break;
                default:
                    throw new BadBodyException(400, MultipartForm.BodyField, "the JSON body goes on after its object");
            }
        }

        private byte[] Base64(ref Utf8JsonReader reader)
        {
            long length = reader.HasValueSequence ? reader.ValueSequence.Length : reader.ValueSpan.Length;
            // Base64 is 4 characters per 3 bytes: the text's length bounds the image's before it is decoded.
            if (length / 4 * 3 > maxImageBytes + 2)
                throw new BadBodyException(413, Field, $"over the {maxImageBytes}-byte limit of an image");
            if (!reader.TryGetBytesFromBase64(out var bytes))
                throw new BadBodyException(400, Field, "is not base64 (RFC 4648, with padding)");
            if (bytes!.Length > maxImageBytes)
                throw new BadBodyException(413, Field, $"{bytes.Length.ToString(CultureInfo.InvariantCulture)} bytes is over the {maxImageBytes}-byte limit of an image");
            return bytes;
        }

        private void Expect(bool condition, string reason)
        {
            if (!condition) throw new BadBodyException(400, Field, reason);
        }
    }
}
