package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/delen-edge/delen/broker"
	"github.com/delen-edge/delen/models/mnist"
	"github.com/delen-edge/delen/schema"
	"github.com/spf13/cobra"
)

// sendFlags are `delen send`'s options.
type sendFlags struct {
	brokerURL, tenant, file, model, policy, id, prefix, encoding string
	tlsCA, username, password                                    string
	mnist                                                        int
	mnistSet                                                     bool // --mnist was given
	latencyMS, accuracy, energyMJ, confidence                    float64
	exit, qos                                                    int
	timeout                                                      time.Duration
	asJSON, float                                                bool

	image string // --image: a JPEG or PNG file
}

func newSendCmd(g *globals) *cobra.Command {
	f := &sendFlags{}
	c := &cobra.Command{
		Use:   "send --tenant T (--mnist N | --file F | --image F) [bounds]",
		Short: "publish one request and print its result",
		Example: `  delen send --tenant cam1 --mnist 0                    # MNIST test image 0, the tenant's defaults
  delen send --tenant cam1 --mnist 0 --exit 1 --json    # stop at exit 1, print the result as JSON
  delen send --tenant cam1 --mnist 8 --confidence 0.99 --latency-ms 5
  delen send --tenant cam1 --file request.json          # a request written by hand (JSON or msgpack)
  delen send --tenant cam1 --image deploy/clients/mnist-7.png   # a JPEG or PNG file, decoded and resized by the agent
  DELEN_MQTT_PASSWORD=secret delen send --tenant cam1 --mnist 3   # with serve --tenants`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			f.mnistSet = cmd.Flags().Changed("mnist")
			return send(cmd, f)
		},
	}
	fs := c.Flags()
	fs.StringVar(&f.brokerURL, "broker", "tcp://127.0.0.1:1883", "broker `url` (or DELEN_BROKER)")
	fs.StringVar(&f.username, "username", "", "MQTT user `name` (or DELEN_MQTT_USER; the tenant's, with serve --tenants; default: --tenant when a password is given)")
	fs.StringVar(&f.password, "password", "", "MQTT password (or DELEN_MQTT_PASSWORD, which keeps it out of the process list)")
	fs.StringVar(&f.tlsCA, "tls-ca", "", "CA bundle `file` (PEM; or DELEN_TLS_CA) that an ssl:// broker's certificate must chain to (default: the system roots)")
	fs.StringVar(&f.tenant, "tenant", "", "tenant `name` (required)")
	fs.IntVar(&f.mnist, "mnist", 0, "send MNIST test image `N` (0-9999), with its label")
	fs.StringVar(&f.file, "file", "", "send the request in this `file` (JSON or msgpack); bound flags override its bound")
	fs.StringVar(&f.image, "image", "", "send this JPEG or PNG `file` as the input (the agent decodes and resizes it)")
	fs.StringVar(&f.model, "model", "", "model (default: the tenant's)")
	fs.StringVar(&f.policy, "policy", "", "policy (default: the tenant's)")
	fs.StringVar(&f.id, "id", "", "request id (default: random)")
	fs.StringVar(&f.prefix, "prefix", "delen", "topic prefix (or DELEN_PREFIX)")
	choiceVar(fs, &f.encoding, "encoding", "msgpack", "request encoding", "msgpack", "json")
	fs.BoolVar(&f.float, "float32", false, "send the MNIST image as float32 instead of uint8")
	fs.Float64Var(&f.latencyMS, "latency-ms", 0, "latency bound (`ms`)")
	fs.Float64Var(&f.accuracy, "accuracy", 0, "accuracy bound (0-1]")
	fs.Float64Var(&f.energyMJ, "energy-mj", 0, "energy bound (`mJ`)")
	fs.Float64Var(&f.confidence, "confidence", 0, "confidence bound (0-1]")
	fs.IntVar(&f.exit, "exit", 0, "fixed exit (1-based)")
	fs.IntVar(&f.qos, "qos", 1, "MQTT QoS of the request (0 or 1)")
	fs.DurationVar(&f.timeout, "timeout", 10*time.Second, "how long to wait for the result")
	fs.BoolVar(&f.asJSON, "json", false, "print the result as JSON")
	withEnv(fs, "", "broker", "tls-ca", "prefix")
	withEnv(fs, "DELEN_MQTT_USER", "username")
	withEnv(fs, "DELEN_MQTT_PASSWORD", "password")
	return c
}

func (f *sendFlags) request() (*schema.Request, error) {
	var req *schema.Request
	given := 0
	for _, set := range []bool{f.file != "", f.mnistSet, f.image != ""} {
		if set {
			given++
		}
	}
	switch {
	case given > 1:
		return nil, errors.New("give one of --mnist, --file and --image")
	case f.image != "":
		b, err := os.ReadFile(f.image)
		if err != nil {
			return nil, err
		}
		format := imageFormat(b)
		if format == "" {
			return nil, fmt.Errorf("--image %s: not a JPEG or PNG file", f.image)
		}
		req = &schema.Request{Input: schema.Tensor{Format: format, Data: b}}
	case f.file != "":
		b, err := os.ReadFile(f.file)
		if err != nil {
			return nil, err
		}
		r, _, err := schema.DecodeRequest(b, 64<<20)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.file, err)
		}
		req = r
	case f.mnistSet:
		set, err := mnist.Test()
		if err != nil {
			return nil, err
		}
		if f.mnist < 0 || f.mnist >= set.Len() {
			return nil, fmt.Errorf("--mnist %d: the test set has %d images", f.mnist, set.Len())
		}
		label := set.Label(f.mnist)
		req = &schema.Request{Label: &label, Meta: map[string]any{"mnist": f.mnist}}
		if f.float {
			req.Input = schema.NewFloat32Tensor([]int{1, mnist.Side, mnist.Side}, set.Float(f.mnist))
		} else {
			req.Input = schema.NewUint8Tensor([]int{1, mnist.Side, mnist.Side}, set.Images[f.mnist])
		}
	default:
		return nil, errors.New("give --mnist N, --file F or --image F")
	}
	if f.id != "" {
		req.ID = f.id
	}
	if req.ID == "" {
		var b [8]byte
		rand.Read(b[:])
		req.ID = "send-" + hex.EncodeToString(b[:])
	}
	if f.model != "" {
		req.Model = f.model
	}
	if f.policy != "" {
		req.Policy = f.policy
	}
	set := func(v float64) *float64 { return &v }
	if f.latencyMS > 0 {
		req.Bound.LatencyMS = set(f.latencyMS)
	}
	if f.accuracy > 0 {
		req.Bound.Accuracy = set(f.accuracy)
	}
	if f.energyMJ > 0 {
		req.Bound.EnergyMJ = set(f.energyMJ)
	}
	if f.confidence > 0 {
		req.Bound.Confidence = set(f.confidence)
	}
	if f.exit > 0 {
		e := f.exit
		req.Bound.Exit = &e
	}
	req.SentAt = time.Now().UnixMicro()
	return req, nil
}

// imageFormat tells a JPEG or PNG file by its first bytes ("" for
// neither).
func imageFormat(b []byte) string {
	switch {
	case bytes.HasPrefix(b, []byte{0xff, 0xd8, 0xff}):
		return schema.FormatJPEG
	case bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")):
		return schema.FormatPNG
	}
	return ""
}

func send(cmd *cobra.Command, f *sendFlags) error {
	if !schema.ValidTenant(f.tenant) {
		return fmt.Errorf("--tenant %q: want a name like cam1 (lower-case letters, digits, _ and -)", f.tenant)
	}
	req, err := f.request()
	if err != nil {
		return err
	}
	enc := schema.MsgPack
	if f.encoding == "json" {
		enc = schema.JSON
	}
	payload, err := schema.EncodeRequest(req, enc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
	defer cancel()
	var tlsCfg *tls.Config
	if f.tlsCA != "" {
		if tlsCfg, err = broker.ClientTLSConfig(f.tlsCA, "", ""); err != nil {
			return err
		}
	}
	var b [6]byte
	rand.Read(b[:])
	password := f.password
	username := f.username
	if username == "" && password != "" {
		username = f.tenant
	}
	client, err := broker.Dial(ctx, broker.ClientConfig{URL: f.brokerURL, ClientID: "delen-send-" + hex.EncodeToString(b[:]), CleanSession: true,
		TLS: tlsCfg, Username: username, Password: password, FailFast: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return connectError(f.brokerURL, username, err)
	}
	defer client.Close()
	topics := schema.Topics{Prefix: f.prefix}
	got := make(chan []byte, 1)
	resultTopic := topics.Results(f.tenant)
	if req.ReplyTo != "" {
		resultTopic = req.ReplyTo
	}
	err = client.Subscribe(resultTopic, 1, func(m broker.Message) {
		m.Ack()
		var probe struct {
			ID string `json:"id" msgpack:"id"`
		}
		if r, _, err := schema.DecodeResult(m.Payload(), 64<<20); err == nil {
			probe.ID = r.ID
		}
		if probe.ID == req.ID {
			select {
			case got <- append([]byte(nil), m.Payload()...):
			default:
			}
		}
	})
	if err != nil {
		return err
	}
	if err := client.Publish(ctx, topics.Requests(f.tenant), byte(f.qos), false, payload); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	var raw []byte
	select {
	case raw = <-got:
	case <-ctx.Done():
		return fmt.Errorf("no result for %s within %s (is `delen serve` running on %s?)", req.ID, f.timeout, f.brokerURL)
	}
	res, _, err := schema.DecodeResult(raw, 64<<20)
	if err != nil {
		return err
	}
	if f.asJSON {
		return printJSON(cmd.OutOrStdout(), sentResult{res, req.Label})
	}
	return printResult(cmd, res, req)
}

// sentResult is `delen send --json`: the result, and the label of the
// image sent (as the table's LABEL column shows it), when known.
type sentResult struct {
	*schema.Result
	Label *int `json:"label,omitempty"`
}

// connectError is one line saying why the broker at url could not be
// reached, for the cases a person can act on.
func connectError(url, user string, err error) error {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("cannot connect to %s: connection refused (is `delen serve` running, with --listen on that address?)", url)
	case errors.Is(err, broker.ErrNotAuthorized) && user == "":
		return fmt.Errorf("%s refused the connection: not authorized (the broker wants a username and password: --password or DELEN_MQTT_PASSWORD)", url)
	case errors.Is(err, broker.ErrNotAuthorized):
		return fmt.Errorf("%s refused the connection: not authorized (user %q and its password: check --username and --password or DELEN_MQTT_PASSWORD)", url, user)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("cannot connect to %s: no answer within --timeout", url)
	}
	return fmt.Errorf("cannot connect to %s: %w", url, err)
}

func printResult(cmd *cobra.Command, r *schema.Result, req *schema.Request) error {
	w := cmd.OutOrStdout()
	if r.Status == schema.StatusError || r.Status == schema.StatusShed {
		msg := ""
		if r.Error != nil {
			msg = r.Error.Code + ": " + r.Error.Message
		}
		fmt.Fprintf(w, "%s %s %s\n", r.ID, r.Status, msg)
		return nil
	}
	class := "-"
	if r.Class != nil {
		class = fmt.Sprint(*r.Class)
	}
	met := "-"
	if r.BoundMet != nil {
		met = fmt.Sprint(*r.BoundMet)
	}
	label := "-"
	if req.Label != nil {
		label = fmt.Sprint(*req.Label)
	}
	var top []string
	for _, t := range r.Top {
		top = append(top, fmt.Sprintf("%d:%.3f", t.Class, t.Prob))
	}
	return table(w, []string{"ID", "STATUS", "MODEL", "EXIT", "CLASS", "LABEL", "CONFIDENCE", "LATENCY_MS", "QUEUE_MS", "COMPUTE_MS", "ENERGY_MJ", "SOURCE", "ACCURACY_EST", "BOUND_MET", "TOP"},
		[][]string{{r.ID, r.Status, r.Model, fmt.Sprintf("%d/%d", r.Exit, r.Exits), class, label, fmt.Sprintf("%.3f", r.Confidence),
			fmt.Sprintf("%.3f", r.LatencyMS), fmt.Sprintf("%.3f", r.QueueMS), fmt.Sprintf("%.3f", r.ComputeMS),
			fmt.Sprintf("%.4f", r.EnergyMJ), r.EnergySource, fmt.Sprintf("%.4f", r.AccuracyEst), met, strings.Join(top, ",")}})
}
