using System.Text.Json;
using FineTune.Workflow.Jobs;
using FineTune.Workflow.Orchestration;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.WebUtilities;

namespace FineTune.Api;

/// <summary>
/// A refused request as RFC 9457 problem details (<c>application/problem+json</c>): <see cref="Type"/> and <see cref="Title"/>
/// name the HTTP status, <see cref="Detail"/> says what is wrong, <see cref="Errors"/> lists each field at fault with its
/// reasons (as ASP.NET Core's validation problems do), <see cref="ErrorKind"/> is always badInput (fix the request, do not
/// retry it as is) and <see cref="Links"/> point at the run a conflict is about.
/// </summary>
public sealed record ApiProblem(string Type, string Title, int Status, string Detail, IReadOnlyDictionary<string, string[]>? Errors = null, RunLinks? Links = null)
{
    public const string ContentType = "application/problem+json";

    public string ErrorKind => ErrorKinds.BadInput;

    public static ApiProblem Of(int status, string detail, IReadOnlyList<FieldError>? fields = null, RunLinks? links = null) => new(
        $"https://www.rfc-editor.org/rfc/rfc9110#status.{status}", ReasonPhrases.GetReasonPhrase(status), status,
        fields is { Count: > 0 } ? $"{detail}: {string.Join("; ", fields.Select(f => $"{f.Field} {f.Reason}"))}" : detail,
        fields is { Count: > 0 } ? fields.GroupBy(f => f.Field).ToDictionary(g => g.Key, g => g.Select(f => f.Reason).ToArray()) : null,
        links);

    /// <summary>The problem as a response, with its content type.</summary>
    public IResult ToResult(JsonSerializerOptions json) => Results.Json(this, json, ContentType, Status);
}
