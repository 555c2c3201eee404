fn main() {
    println!("morphgrad");
}
