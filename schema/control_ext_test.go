package schema

import (
	"testing"
)

func TestControlTenantLimitsAndParams(t *testing.T) {
	for _, enc := range []Encoding{MsgPack, JSON} {
		shed := "shed"
		q, rate := 50, 20.0
		c := &Control{Params: map[string]float64{"joules": 5, "window_s": 60}, Infeasible: &shed, QueueLimit: &q, RateLimit: &rate}
		b, err := EncodeControl(c, enc)
		if err != nil {
			t.Fatal(err)
		}
		got, _, err := DecodeControl(b, 1<<20)
		if err != nil {
			t.Fatalf("%s: %v", enc, err)
		}
		if err := got.Validate(); err != nil {
			t.Fatalf("%s: %v", enc, err)
		}
		s := Settings{Weight: 1}.Apply(got)
		if s.Params["joules"] != 5 || s.Params["window_s"] != 60 || s.Infeasible != "shed" || s.QueueLimit != 50 || s.RateLimit != 20 {
			t.Fatalf("%s: settings %+v", enc, s)
		}
		sb, err := EncodeSettings(&s, enc)
		if err != nil {
			t.Fatal(err)
		}
		back, _, err := DecodeSettings(sb, 1<<20)
		if err != nil || back.Params["joules"] != 5 || back.Infeasible != "shed" || back.QueueLimit != 50 || back.RateLimit != 20 {
			t.Fatalf("%s: settings round trip %+v %v", enc, back, err)
		}
	}
	bad := []string{`{"infeasible":"maybe"}`, `{"queue_limit":-1}`, `{"rate_limit":-2}`, `{"params":{"a":"x"}}`}
	for _, p := range bad {
		c, _, err := DecodeControl([]byte(p), 1<<20)
		if err == nil {
			err = c.Validate()
		}
		if CodeOf(err) != CodeBadRequest {
			t.Errorf("%s: %v, want bad_request", p, err)
		}
	}
}
