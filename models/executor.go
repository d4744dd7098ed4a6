package models

import (
	"errors"
	"fmt"

	ort "github.com/yalue/onnxruntime_go"
)

// ErrFinished is returned by RunStage on a State that has passed its last
// exit.
var ErrFinished = errors.New("all stages already run")

// maxFreeStates bounds how many released States a model keeps per batch
// size for reuse.
const maxFreeStates = 64

// State is one request's (or one batch's) progress through a model's
// stages: the input, the features between stages, and each exit's logits.
// Its tensors are allocated once and reused, and stage i's features tensor
// is stage i+1's input, so running a stage copies nothing. A State belongs
// to one goroutine at a time; different States run concurrently.
type State struct {
	m      *Model
	batch  int
	next   int
	input  *ort.Tensor[float32]
	feats  []*ort.Tensor[float32] // feats[i] is stage i's output
	logits []*ort.Tensor[float32]
	// binds[i] binds stage i's tensors once, so a run passes no names.
	binds []*ort.IoBinding
}

// NewState returns a State for batch inputs, positioned before stage 0.
// Fill Input() before the first RunStage.
func (m *Model) NewState(batch int) (*State, error) {
	if batch < 1 {
		return nil, fmt.Errorf("batch %d: want at least 1", batch)
	}
	if batch > 1 && !m.stages[0].dynamicBatch {
		return nil, fmt.Errorf("batch %d: %s has a fixed batch of 1", batch, m.stages[0].file)
	}
	m.mu.Lock()
	if free := m.free[batch]; len(free) > 0 {
		s := free[len(free)-1]
		m.free[batch] = free[:len(free)-1]
		m.mu.Unlock()
		s.next = 0
		return s, nil
	}
	m.mu.Unlock()
	n := len(m.stages)
	s := &State{m: m, batch: batch, feats: make([]*ort.Tensor[float32], n),
		logits: make([]*ort.Tensor[float32], n), binds: make([]*ort.IoBinding, n)}
	var err error
	if s.input, err = ort.NewEmptyTensor[float32](s.shape(m.stages[0].in)); err != nil {
		return nil, fmt.Errorf("input tensor: %w", err)
	}
	return s, nil
}

func (s *State) shape(dims []int64) ort.Shape { return append(ort.Shape{int64(s.batch)}, dims...) }

// prepare allocates stage i's tensors and binding the first time the State
// runs that stage (a request that leaves early never pays for the later
// stages; a batch State pays only for the stage it runs). Stage i reads
// feats[i-1], allocated here too when stage i-1 never ran in this State.
func (s *State) prepare(i int) error {
	if s.binds[i] != nil {
		return nil
	}
	st := s.m.stages[i]
	in := s.input
	if i > 0 {
		if s.feats[i-1] == nil {
			t, err := ort.NewEmptyTensor[float32](s.shape(s.m.stages[i-1].features))
			if err != nil {
				return fmt.Errorf("stage %d input tensor: %w", i, err)
			}
			s.feats[i-1] = t
		}
		in = s.feats[i-1]
	}
	if st.features != nil && s.feats[i] == nil {
		t, err := ort.NewEmptyTensor[float32](s.shape(st.features))
		if err != nil {
			return fmt.Errorf("stage %d features tensor: %w", i, err)
		}
		s.feats[i] = t
	}
	if s.logits[i] == nil {
		t, err := ort.NewEmptyTensor[float32](ort.Shape{int64(s.batch), st.classes})
		if err != nil {
			return fmt.Errorf("stage %d logits tensor: %w", i, err)
		}
		s.logits[i] = t
	}
	b, err := st.sess.CreateIoBinding()
	if err != nil {
		return fmt.Errorf("stage %d binding: %w", i, err)
	}
	spec := s.m.Manifest.Stages[i]
	err = b.BindInput(spec.Input, in)
	if err == nil && s.feats[i] != nil {
		err = b.BindOutput(spec.Outputs.Features, s.feats[i])
	}
	if err == nil {
		err = b.BindOutput(spec.Outputs.Logits, s.logits[i])
	}
	if err != nil {
		b.Destroy()
		return fmt.Errorf("stage %d binding: %w", i, err)
	}
	s.binds[i] = b
	return nil
}

// Input is the stage-0 input to fill: batch × the manifest's input shape,
// float32 in the layout the model expects.
func (s *State) Input() []float32 { return s.input.GetData() }

// Batch is the number of inputs the State carries.
func (s *State) Batch() int { return s.batch }

// Next is the 0-based index of the stage RunStage will run next; it equals
// the number of exits when every stage has run.
func (s *State) Next() int { return s.next }

// Done reports whether every stage has run.
func (s *State) Done() bool { return s.next >= len(s.m.stages) }

// Logits returns exit k's logits (1-based exit) once its stage has run:
// batch × classes values, valid until Release.
func (s *State) Logits(exit int) []float32 { return s.logits[exit-1].GetData() }

// RunStage runs the next stage and returns its exit's logits (batch ×
// classes values, valid until Release).
func (s *State) RunStage() ([]float32, error) {
	i := s.next
	if i >= len(s.m.stages) {
		return nil, ErrFinished
	}
	st := s.m.stages[i]
	if err := s.prepare(i); err != nil {
		return nil, err
	}
	if err := st.sess.RunWithBinding(s.binds[i]); err != nil {
		return nil, fmt.Errorf("run stage %d (%s): %w", i, st.file, err)
	}
	s.next++
	return s.logits[i].GetData(), nil
}

// Release hands the State back to its model for reuse; it must not be
// used afterwards.
func (s *State) Release() {
	m := s.m
	m.mu.Lock()
	if m.free != nil && len(m.free[s.batch]) < maxFreeStates {
		m.free[s.batch] = append(m.free[s.batch], s)
		m.mu.Unlock()
		return
	}
	m.mu.Unlock()
	s.destroy()
}

func (s *State) destroy() {
	for _, b := range s.binds {
		if b != nil {
			b.Destroy()
		}
	}
	if s.input != nil {
		s.input.Destroy()
	}
	for _, t := range s.feats {
		if t != nil {
			t.Destroy()
		}
	}
	for _, t := range s.logits {
		if t != nil {
			t.Destroy()
		}
	}
}

// MonolithicRun runs the model's monolithic file (every exit at once) on
// preallocated tensors: the baseline staged execution is compared with. It
// runs through an I/O binding, as State's stages do, so both sides make the
// same kind of ONNX Runtime call with the same session options.
type MonolithicRun struct {
	sess  *ort.DynamicAdvancedSession
	bind  *ort.IoBinding
	input *ort.Tensor[float32]
	outs  []*ort.Tensor[float32]
	data  [][]float32
}

// NewMonolithicRun prepares a monolithic run for batch inputs; the model
// must have been loaded with LoadOptions.Monolithic.
func (m *Model) NewMonolithicRun(batch int) (*MonolithicRun, error) {
	if m.mono == nil {
		return nil, errors.New("model loaded without its monolithic file")
	}
	spec := m.Manifest.Monolithic
	r := &MonolithicRun{sess: m.mono}
	var err error
	if r.input, err = ort.NewEmptyTensor[float32](append(ort.Shape{int64(batch)}, m.stages[0].in...)); err != nil {
		return nil, err
	}
	for range m.monoOuts {
		t, err := ort.NewEmptyTensor[float32](ort.Shape{int64(batch), int64(m.Classes())})
		if err != nil {
			r.Close()
			return nil, err
		}
		r.outs = append(r.outs, t)
		r.data = append(r.data, t.GetData())
	}
	if r.bind, err = m.mono.CreateIoBinding(); err != nil {
		r.Close()
		return nil, fmt.Errorf("monolithic binding: %w", err)
	}
	err = r.bind.BindInput(spec.Input, r.input)
	for i := 0; err == nil && i < len(r.outs); i++ {
		err = r.bind.BindOutput(spec.Outputs[i], r.outs[i])
	}
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("monolithic binding: %w", err)
	}
	return r, nil
}

// Input is the input to fill before Run.
func (r *MonolithicRun) Input() []float32 { return r.input.GetData() }

// Run runs the whole network and returns every exit's logits (valid until
// the next Run or Close).
func (r *MonolithicRun) Run() ([][]float32, error) {
	if err := r.sess.RunWithBinding(r.bind); err != nil {
		return nil, fmt.Errorf("run monolithic model: %w", err)
	}
	return r.data, nil
}

// Close frees the run's binding and tensors.
func (r *MonolithicRun) Close() {
	if r.bind != nil {
		r.bind.Destroy()
	}
	if r.input != nil {
		r.input.Destroy()
	}
	for _, t := range r.outs {
		t.Destroy()
	}
}

// RunBatch runs the next stage of every state in one ONNX Runtime call:
// their stage inputs are gathered into a pooled batch State, the stage runs
// once, and each state gets its own features and logits back, as if it had
// run alone. All states must belong to this model, carry one input each and
// stand at the same stage, and that stage must have a symbolic batch
// dimension (DynamicBatch). With one state it is RunStage.
func (m *Model) RunBatch(states []*State) error {
	if len(states) == 0 {
		return nil
	}
	i := states[0].next
	if len(states) == 1 {
		_, err := states[0].RunStage()
		return err
	}
	if i >= len(m.stages) {
		return ErrFinished
	}
	st := m.stages[i]
	if !st.dynamicBatch {
		return fmt.Errorf("stage %d (%s) has a fixed batch: it cannot run %d inputs at once", i, st.file, len(states))
	}
	for _, s := range states {
		if s.m != m || s.next != i || s.batch != 1 {
			return fmt.Errorf("batch: states must be of one model, at stage %d, with one input each", i)
		}
	}
	b, err := m.NewState(len(states))
	if err != nil {
		return err
	}
	defer b.Release()
	if err := b.prepare(i); err != nil {
		return err
	}
	in := stageInput(b, i)
	per := len(in) / len(states)
	for k, s := range states {
		copy(in[k*per:(k+1)*per], stageInput(s, i))
	}
	b.next = i
	if _, err := b.RunStage(); err != nil {
		return err
	}
	var feats []float32
	fper := 0
	if b.feats[i] != nil {
		feats = b.feats[i].GetData()
		fper = len(feats) / len(states)
	}
	logits := b.logits[i].GetData()
	lper := len(logits) / len(states)
	for k, s := range states {
		if err := s.prepare(i); err != nil {
			return err
		}
		if feats != nil {
			copy(s.feats[i].GetData(), feats[k*fper:(k+1)*fper])
		}
		copy(s.logits[i].GetData(), logits[k*lper:(k+1)*lper])
		s.next++
	}
	return nil
}

// stageInput is the data stage i of s reads.
func stageInput(s *State, i int) []float32 {
	if i == 0 {
		return s.input.GetData()
	}
	return s.feats[i-1].GetData()
}
