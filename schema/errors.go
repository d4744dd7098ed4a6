package schema

import (
	"errors"
	"fmt"
)

// Error codes carried in Result.Error.Code (docs/protocol.md, "Error codes").
const (
	// CodeBadRequest: the payload is malformed or fails validation.
	CodeBadRequest = "bad_request"
	// CodeUnknownModel: the request names a model the agent does not serve.
	CodeUnknownModel = "unknown_model"
	// CodeShapeMismatch: a well-formed tensor whose dtype or shape does not
	// fit the model's input.
	CodeShapeMismatch = "shape_mismatch"
	// CodeTooLarge: the payload exceeds the agent's byte limit.
	CodeTooLarge = "too_large"
	// CodeOverloaded: the agent refused the request for lack of capacity.
	CodeOverloaded = "overloaded"
	// CodeUnauthorized: the sender may not use this tenant or model.
	CodeUnauthorized = "unauthorized"
	// CodeInternal: a fault inside the agent.
	CodeInternal = "internal"
)

// Error is the typed error of this package and the `error` object of a
// Result: {code, message}. Callers branch on Code with errors.As:
//
//	var e *schema.Error
//	if errors.As(err, &e) && e.Code == schema.CodeTooLarge { ... }
type Error struct {
	// Code is one of the Code* constants.
	Code string `msgpack:"code" json:"code"`
	// Message says what is wrong, naming the field when there is one
	// ("bound.latency_ms: must be > 0").
	Message string `msgpack:"message" json:"message"`
	// ID is the id of the request the error is about, when it could be read
	// (and is a valid id); empty otherwise. Not part of the wire object.
	ID string `msgpack:"-" json:"-"`
}

// Error implements error as "code: message".
func (e *Error) Error() string {
	if e == nil {
		return "<nil>"
	}
	if e.Message == "" {
		return e.Code
	}
	return e.Code + ": " + e.Message
}

// Is reports whether target is an *Error with the same Code, so that
// errors.Is(err, &schema.Error{Code: schema.CodeBadRequest}) works.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && e != nil && t != nil && t.Code == e.Code
}

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// CodeOf returns the code of the *Error in err's chain, "" for a nil error, and
// CodeInternal for any other error.
func CodeOf(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) && e != nil {
		return e.Code
	}
	return CodeInternal
}

func badRequest(format string, args ...any) *Error {
	return Errorf(CodeBadRequest, format, args...)
}
