//! The per-symbol work of the FEC encoder: every codeword's running remainder, advanced one
//! input symbol at a time by a systematic encoder's shift register step.

use super::gf256;

/// Below this many codewords a piece is encoded on the calling thread: spawning a thread
/// costs tens of microseconds, the time the 2-root kernel takes for ~100k codewords.
const PARALLEL_MIN_CODEWORDS: usize = 1 << 17;

/// The remainders of every codeword, in the form that suits the number of roots.
pub(super) fn new_codewords(generator: &[u8], codewords: usize) -> Box<dyn Codewords> {
    match generator.len() - 1 {
        _ if generator == TwoRoots::GENERATOR => Box::new(TwoRoots {
            rem: [vec![0; codewords], vec![0; codewords]],
        }),
        ..=4 => Box::new(Registers::<u32>::new(generator, codewords)),
        5..=8 => Box::new(Registers::<u64>::new(generator, codewords)),
        9..=16 => Box::new(Registers::<[u64; 2]>::new(generator, codewords)),
        _ => Box::new(Registers::<[u64; 3]>::new(generator, codewords)),
    }
}

/// The remainders of all codewords, each packed into one register value.
pub(super) trait Codewords: Send {
    /// Gives codewords `first..first + symbols.len()` their next symbol each.
    fn absorb(&mut self, first: usize, symbols: &[u8], threads: usize);
    /// The parity bytes, `roots` per codeword.
    fn parity(&self, roots: usize) -> Vec<u8>;
}

/// The default 2 roots, where the generator is `x^2 + 3x + 2`: the products of the feedback
/// `f` are `2f` and `3f = 2f + f`, a single doubling. The two remainder bytes live in separate
/// arrays so the loop over codewords compiles to vector instructions.
struct TwoRoots {
    rem: [Vec<u8>; 2],
}

impl TwoRoots {
    /// `x^2 + 3x + 2 = (x + 1)(x + 2)`, ascending.
    const GENERATOR: [u8; 3] = [2, 3, 1];
}

impl Codewords for TwoRoots {
    fn absorb(&mut self, first: usize, symbols: &[u8], threads: usize) {
        let range = first..first + symbols.len();
        let [rem0, rem1] = &mut self.rem;
        let (rem0, rem1) = (&mut rem0[range.clone()], &mut rem1[range]);
        if threads <= 1 || symbols.len() < PARALLEL_MIN_CODEWORDS {
            return two_roots_step(rem0, rem1, symbols);
        }
        let per_thread = symbols.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let mut work = rem0
                .chunks_mut(per_thread)
                .zip(rem1.chunks_mut(per_thread))
                .zip(symbols.chunks(per_thread));
            let mine = work.next();
            for ((rem0, rem1), symbols) in work {
                scope.spawn(move || two_roots_step(rem0, rem1, symbols));
            }
            if let Some(((rem0, rem1), symbols)) = mine {
                two_roots_step(rem0, rem1, symbols);
            }
        });
    }

    fn parity(&self, _roots: usize) -> Vec<u8> {
        self.rem[0]
            .iter()
            .zip(&self.rem[1])
            .flat_map(|(&a, &b)| [a, b])
            .collect()
    }
}

fn two_roots_step(rem0: &mut [u8], rem1: &mut [u8], symbols: &[u8]) {
    for ((r0, r1), &symbol) in rem0.iter_mut().zip(rem1.iter_mut()).zip(symbols) {
        let feedback = symbol ^ *r0;
        let twice = gf256::double(feedback);
        *r0 = *r1 ^ twice ^ feedback;
        *r1 = twice;
    }
}

/// A codeword's remainder as a little-endian register: byte 0 is the next to be fed back
/// (libfec's `bb[0]`, the first parity byte written out).
trait Register: Copy + Default + Send + Sync + 'static {
    /// One encoder step: shift the register down one byte, add the feedback's products.
    fn step(self, symbol: u8, products: &[Self; 256]) -> Self;
    fn from_le_slice(bytes: &[u8]) -> Self;
    fn write_le(self, out: &mut [u8]);
}

struct Registers<R> {
    /// `products[f]` holds `f * g[roots - 1 - i]` in byte `i`: what feedback `f` adds to the
    /// shifted register.
    products: Box<[R; 256]>,
    state: Vec<R>,
}

impl<R: Register> Registers<R> {
    fn new(generator: &[u8], codewords: usize) -> Self {
        let roots = generator.len() - 1;
        let mut products = Box::new([R::default(); 256]);
        let mut bytes = vec![0u8; roots];
        for (f, entry) in products.iter_mut().enumerate() {
            for (i, b) in bytes.iter_mut().enumerate() {
                *b = gf256::mul(f as u8, generator[roots - 1 - i]);
            }
            *entry = R::from_le_slice(&bytes);
        }
        Registers {
            products,
            state: vec![R::default(); codewords],
        }
    }
}

impl<R: Register> Codewords for Registers<R> {
    fn absorb(&mut self, first: usize, symbols: &[u8], threads: usize) {
        let state = &mut self.state[first..first + symbols.len()];
        let products = &*self.products;
        if threads <= 1 || symbols.len() < PARALLEL_MIN_CODEWORDS {
            return step_all(state, symbols, products);
        }
        let per_thread = symbols.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let mut work = state.chunks_mut(per_thread).zip(symbols.chunks(per_thread));
            let mine = work.next();
            for (state, symbols) in work {
                scope.spawn(move || step_all(state, symbols, products));
            }
            if let Some((state, symbols)) = mine {
                step_all(state, symbols, products);
            }
        });
    }

    fn parity(&self, roots: usize) -> Vec<u8> {
        let mut out = vec![0u8; self.state.len() * roots];
        for (register, out) in self.state.iter().zip(out.chunks_exact_mut(roots)) {
            register.write_le(out);
        }
        out
    }
}

fn step_all<R: Register>(state: &mut [R], symbols: &[u8], products: &[R; 256]) {
    for (register, &symbol) in state.iter_mut().zip(symbols) {
        *register = register.step(symbol, products);
    }
}

macro_rules! int_register {
    ($($t:ty),*) => {$(
        impl Register for $t {
            #[inline(always)]
            fn step(self, symbol: u8, products: &[Self; 256]) -> Self {
                let feedback = (self as u8) ^ symbol;
                (self >> 8) ^ products[usize::from(feedback)]
            }

            fn from_le_slice(bytes: &[u8]) -> Self {
                let mut buf = [0u8; std::mem::size_of::<$t>()];
                buf[..bytes.len()].copy_from_slice(bytes);
                <$t>::from_le_bytes(buf)
            }

            fn write_le(self, out: &mut [u8]) {
                let len = out.len();
                out.copy_from_slice(&self.to_le_bytes()[..len]);
            }
        }
    )*};
}

int_register!(u32, u64);

impl<const N: usize> Register for [u64; N]
where
    [u64; N]: Default,
{
    #[inline(always)]
    fn step(self, symbol: u8, products: &[Self; 256]) -> Self {
        let feedback = (self[0] as u8) ^ symbol;
        let row = &products[usize::from(feedback)];
        let mut next = [0u64; N];
        for i in 0..N {
            let carry = if i + 1 < N { self[i + 1] << 56 } else { 0 };
            next[i] = ((self[i] >> 8) | carry) ^ row[i];
        }
        next
    }

    fn from_le_slice(bytes: &[u8]) -> Self {
        let mut words = [0u64; N];
        for (word, chunk) in words.iter_mut().zip(bytes.chunks(8)) {
            *word = <u64 as Register>::from_le_slice(chunk);
        }
        words
    }

    fn write_le(self, out: &mut [u8]) {
        for (word, chunk) in self.iter().zip(out.chunks_mut(8)) {
            Register::write_le(*word, chunk);
        }
    }
}
