using System.Security.Cryptography;
using System.Text;
using FineTune.Workflow.Jobs;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.WebUtilities;
using Microsoft.Net.Http.Headers;

namespace FineTune.Api;

/// <summary>A refused request body: the status (400 malformed, 413 too large, 415 not a form) and the field at fault.</summary>
internal sealed class BadBodyException(int status, string field, string reason) : Exception(reason)
{
    public int Status { get; } = status;
    public FieldError Field { get; } = new(field, reason);
}

/// <summary>
/// A multipart/form-data body read part by part as it arrives, under the API's limits, the same in both hosts:
/// ASP.NET Core's form reader buffers every file before the handler sees one and answers a broken body or a
/// limit with an exception (a 500). Here each part goes straight where it belongs, capped, and every malformed or
/// oversized body is a <see cref="BadBodyException"/> naming the field being read.
/// </summary>
internal static class MultipartForm
{
    /// <summary>Header lines and bytes of one part: a browser or curl sends two or three short lines.</summary>
    private const int HeadersCountLimit = 8;
    private const int HeadersLengthLimit = 8 * 1024;
    /// <summary>RFC 2046's longest boundary.</summary>
    private const int MaxBoundaryLength = 70;
    /// <summary>The whole body when the form could not even be parsed far enough to name a field.</summary>
    public const string BodyField = "body";

    /// <summary>Calls <paramref name="onPart"/> for each part in order; more than <paramref name="maxParts"/> parts is a 400.</summary>
    public static async Task ReadAsync(HttpRequest request, int maxParts, Func<FormPart, Task> onPart, CancellationToken cancellationToken)
    {
        if (!MediaTypeHeaderValue.TryParse(request.ContentType, out var type) || !type.MediaType.Equals("multipart/form-data", StringComparison.OrdinalIgnoreCase))
            throw new BadBodyException(415, BodyField, "send multipart/form-data");
        string boundary = HeaderUtilities.RemoveQuotes(type.Boundary).Value ?? "";
        if (boundary.Length is 0 or > MaxBoundaryLength)
            throw new BadBodyException(400, BodyField, $"the multipart boundary must be 1 to {MaxBoundaryLength} characters");
        var reader = new MultipartReader(boundary, request.Body) { HeadersCountLimit = HeadersCountLimit, HeadersLengthLimit = HeadersLengthLimit };
        string field = BodyField;
        for (int parts = 0; ; parts++)
        {
            var section = await Guard(() => reader.ReadNextSectionAsync(cancellationToken), field, cancellationToken);
            if (section is null) return;
            if (parts == maxParts) throw new BadBodyException(400, BodyField, $"more than {maxParts} parts");
            if (!ContentDispositionHeaderValue.TryParse(section.ContentDisposition, out var disposition) || !disposition.DispositionType.Equals("form-data", StringComparison.OrdinalIgnoreCase)
                || HeaderUtilities.RemoveQuotes(disposition.Name).Value is not { Length: > 0 } name)
                throw new BadBodyException(400, BodyField, $"part {parts + 1} has no Content-Disposition: form-data; name=\"…\"");
            field = name;
            string? fileName = HeaderUtilities.RemoveQuotes(disposition.FileNameStar.HasValue ? disposition.FileNameStar : disposition.FileName).Value;
            await onPart(new FormPart(name, fileName, section.Body, cancellationToken));
        }
    }

    /// <summary>Runs a read of the body, turning a malformed or oversized body into a <see cref="BadBodyException"/> on <paramref name="field"/>.</summary>
    internal static async Task<T> Guard<T>(Func<Task<T>> read, string field, CancellationToken cancellationToken)
    {
        try
        {
            return await read();
        }
        catch (BadHttpRequestException e)
        {
            // The server's own limits (Kestrel's MaxRequestBodySize: 413) and broken framing.
            throw new BadBodyException(e.StatusCode, field, e.Message);
        }
        catch (Exception e) when (e is InvalidDataException or IOException && !cancellationToken.IsCancellationRequested)
        {
            throw new BadBodyException(400, field, $"malformed multipart body: {e.Message}");
        }
    }
}

/// <summary>One part of a multipart form: its field name, the file name it was sent under (null for a plain value), its bytes.</summary>
internal sealed class FormPart(string name, string? fileName, Stream body, CancellationToken cancellationToken)
{
    public string Name { get; } = name;
    public string? FileName { get; } = fileName;

    /// <summary>The part as UTF-8 text, or a 413 naming the field past <paramref name="maxBytes"/>.</summary>
    public async Task<string> ReadTextAsync(int maxBytes)
    {
        using var buffer = new MemoryStream();
        if (await CopyToAsync(buffer, maxBytes) is null) throw new BadBodyException(413, Name, $"is over {maxBytes} bytes");
        return Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length);
    }

    /// <summary>
    /// Copies the part to <paramref name="destination"/> (and into <paramref name="hash"/>): its length, or null once it
    /// passes <paramref name="maxBytes"/>, when the rest of the part is skipped (read, not kept).
    /// </summary>
    public async Task<long?> CopyToAsync(Stream destination, long maxBytes, IncrementalHash? hash = null)
    {
        var chunk = new byte[81920];
        long length = 0;
        while (true)
        {
            int read = await MultipartForm.Guard(async () => await body.ReadAsync(chunk, cancellationToken), Name, cancellationToken);
            if (read == 0) return length <= maxBytes ? length : null;
            length += read;
            if (length > maxBytes) continue;
            hash?.AppendData(chunk, 0, read);
            await destination.WriteAsync(chunk.AsMemory(0, read), cancellationToken);
        }
    }

    public BadBodyException Bad(string reason) => new(400, Name, reason);
}
